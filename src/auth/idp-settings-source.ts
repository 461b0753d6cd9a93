/**
 * The IdP settings as the login path sees them: the identity_provider rows
 * and the mailbox templates, read from the database at most every
 * `reloadMs` (they change rarely and are shared with mailcow's UI), not per
 * login. Concurrent reloads share one read. When a reload fails, the last
 * snapshot stays in use (logged) and the next reload is tried `reloadMs` later.
 */
import { listTemplates } from '../db/index.js';
import type { Queryable } from '../db/index.js';
import { formatProblems, readIdpState } from '../idp/index.js';
import type { IdpSettings } from '../idp/index.js';
import { logFault } from '../logging/index.js';
import type { Logger } from '../logging/index.js';
import { templateAttributeHash } from '../provisioning/index.js';
import type { TemplateInput } from '../provisioning/index.js';
import type { Clock } from './types.js';

export interface IdpTemplate {
  input: TemplateInput;
  /** mailcow's attribute_hash of the template, as stored in mailboxes built from it. */
  hash: string;
}

export interface IdpSnapshot {
  /** null: no IdP configured (or the rows are invalid, see `invalid`). */
  settings: IdpSettings | null;
  /** Why the identity_provider rows cannot be used (each key and problem), or null. */
  invalid: string | null;
  /** Mailbox templates by name. */
  templates: ReadonlyMap<string, IdpTemplate>;
  templateHashes: ReadonlyMap<string, string>;
  loadedAt: number;
}

export interface IdpSettingsSource {
  get(): Promise<IdpSnapshot>;
  /** The next get() reads the database (after `mailauth idp set`, in tests). */
  invalidate(): void;
}

export interface IdpSettingsSourceOptions {
  db: Queryable;
  reloadMs: number;
  clock: Clock;
  logger: Logger;
}

export const DEFAULT_SETTINGS_RELOAD_MS = 30_000;

export async function readIdpSnapshot(db: Queryable, now: number): Promise<IdpSnapshot> {
  const [state, rows] = await Promise.all([readIdpState(db), listTemplates(db, 'mailbox')]);
  const templates = new Map<string, IdpTemplate>();
  for (const row of rows) {
    // Two rows with one name: provisioning's getTemplate takes the lowest id; so does this (rows are sorted by name only).
    if (templates.has(row.name)) continue;
    const input: TemplateInput = { name: row.name, attributes: row.attributes, attributesText: row.attributesText };
    templates.set(row.name, { input, hash: templateAttributeHash(input) });
  }
  const templateHashes = new Map([...templates].map(([name, t]) => [name, t.hash]));
  if (state.parsed.ok) return { settings: state.parsed.settings, invalid: null, templates, templateHashes, loadedAt: now };
  const invalid = `identity_provider table (${state.parsed.source ?? 'unknown source'}): ${formatProblems(state.parsed.problems, (k) => `identity_provider.${k}`)}`;
  return { settings: null, invalid, templates, templateHashes, loadedAt: now };
}

export function createIdpSettingsSource(opts: IdpSettingsSourceOptions): IdpSettingsSource {
  let snapshot: IdpSnapshot | null = null;
  let nextReload = 0;
  let inflight: Promise<IdpSnapshot> | null = null;

  function reload(): Promise<IdpSnapshot> {
    inflight ??= (async () => {
      try {
        const s = await readIdpSnapshot(opts.db, opts.clock.now());
        if (snapshot?.invalid !== s.invalid && s.invalid !== null) opts.logger.error({ problem: s.invalid }, 'identity provider settings are invalid; IdP logins fail until they are fixed');
        snapshot = s;
        nextReload = opts.clock.now() + opts.reloadMs;
        return s;
      } catch (err) {
        if (snapshot === null) throw err;
        logFault(opts.logger, 'warn', { ageMs: opts.clock.now() - snapshot.loadedAt }, 'cannot reload the identity provider settings; using the last ones read', err);
        nextReload = opts.clock.now() + opts.reloadMs;
        return snapshot;
      } finally {
        inflight = null;
      }
    })();
    return inflight;
  }

  return {
    async get() {
      if (snapshot !== null && opts.clock.now() < nextReload) return snapshot;
      return reload();
    },
    invalidate() {
      nextReload = 0;
    },
  };
}
