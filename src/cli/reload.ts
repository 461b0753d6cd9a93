/**
 * SIGHUP for `mailauth serve` (`systemctl reload mailauth`): re-read and
 * validate the config file, apply `log.level` at once, and name the sections
 * whose changes need a restart. Everything else stays as it is: rebuilding the
 * listeners, the pool or the caches under live traffic would cost more than the
 * one-second restart it replaces (Dovecot rides through a restart on
 * INTERNAL_FAILURE and its auth cache), and a reload that half-applies a
 * config is worse than either. Without a handler, Node would exit on SIGHUP,
 * which systemd's Restart=on-failure does not treat as a failure.
 */
import type { Config } from '../config/index.js';
import type { Logger } from '../logging/index.js';

/** Top-level sections applied by SIGHUP; all others need a restart. */
const LIVE = new Set(['log', 'file']);

export interface ReloadOutcome {
  applied: boolean;
  level?: string;
  /** Config sections that differ from the running ones and take effect after a restart. */
  needRestart: string[];
  error?: string;
}

/** Compares in memory only; the log line names sections, never values (secrets live in them). */
export function changedSections(running: Config, next: Config): string[] {
  const keys = new Set([...Object.keys(running), ...Object.keys(next)]);
  const changed: string[] = [];
  for (const k of keys) {
    if (LIVE.has(k)) continue;
    const a = JSON.stringify((running as unknown as Record<string, unknown>)[k]);
    const b = JSON.stringify((next as unknown as Record<string, unknown>)[k]);
    if (a !== b) changed.push(k === 'secretSources' ? 'secrets' : k);
  }
  return changed.sort();
}

export function reloadConfig(load: () => Config, running: Config, logger: Logger): ReloadOutcome {
  let next: Config;
  try {
    next = load();
  } catch (err) {
    const error = err instanceof Error ? err.message : String(err);
    logger.error({ error }, 'SIGHUP: the config file is not valid; keeping the running configuration');
    return { applied: false, needRestart: [], error };
  }
  const needRestart = changedSections(running, next);
  // Logged before the switch, so it shows even when the new level hides info lines.
  logger.info({ logLevel: next.log.level, needRestart }, needRestart.length ? 'SIGHUP: log level applied; restart to apply the other changes' : 'SIGHUP: configuration re-read');
  if (logger.level !== next.log.level) logger.level = next.log.level;
  return { applied: true, level: next.log.level, needRestart };
}
