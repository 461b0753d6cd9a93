/**
 * For the portal tests (issue 19): the daemon with the portal on its own
 * 127.0.0.1 port (public URL = that address), an injectable portal clock, and
 * the page steps both provider tests share (IdP sign-in, create an app
 * password, revoke it), each checked with axe-core and saved as a screenshot.
 */
import type { Page } from 'playwright-core';
import { startDaemon } from '../../src/cli/serve.js';
import type { Daemon } from '../../src/cli/serve.js';
import { testConfig } from './db.js';
import type { TestDatabase } from './db.js';
import { freePort } from './dovecot.js';
import { axeViolations, screenshot, seriousViolations } from './browser.js';
import { captureLog } from './log-capture.js';

export interface PortalUnderTest {
  daemon: Daemon;
  /** The Dovecot-facing listener. */
  url: string;
  /** The portal's public URL (= its listener here). */
  portalUrl: string;
  logText(): string;
  logs(): Record<string, unknown>[];
  /** Moves the portal's clock (sessions, re-authentication) forward. */
  advance(ms: number): void;
  stop(): Promise<void>;
}

export async function startPortalDaemon(
  t: { teardown(fn: () => unknown): void },
  tdb: TestDatabase,
  portal: Record<string, unknown> = {},
  yaml: Record<string, unknown> = {},
  portalPort?: number,
): Promise<PortalUnderTest> {
  const port = portalPort ?? (await freePort());
  const portalUrl = `http://127.0.0.1:${port}`;
  const config = testConfig(tdb, {
    listen: { address: '127.0.0.1:0', ...(yaml.listen as object | undefined) },
    login_log: { enabled: true, flush_interval: '50ms' },
    auth: { bcrypt_cost: 4 },
    ...Object.fromEntries(Object.entries(yaml).filter(([k]) => k !== 'listen')),
    portal: { listen: `127.0.0.1:${port}`, public_url: portalUrl, ...portal },
    log: { level: 'debug', format: 'json' },
  });
  const log = captureLog('debug');
  const logger = log.logger;
  let offset = 0;
  const daemon = await startDaemon(config, { db: tdb.db, logger, portalClock: { now: () => Date.now() + offset } });
  let stopped = false;
  const stop = async (): Promise<void> => {
    if (stopped) return;
    stopped = true;
    await daemon.stop();
  };
  t.teardown(stop);
  const url = daemon.addresses[0]?.url;
  if (!url) throw new Error('daemon has no address');
  return {
    daemon,
    url,
    portalUrl,
    logText: log.text,
    logs: () => [...log.lines],
    advance(ms) {
      offset += ms;
    },
    stop,
  };
}

interface Tap {
  same(a: unknown, b: unknown, msg: string): unknown;
}

/** axe-core on the current page: no serious or critical violation; then a screenshot. */
export async function checkPage(t: Tap, page: Page, group: string, name: string): Promise<void> {
  const violations = await axeViolations(page);
  t.same(seriousViolations(violations), [], `${name}: no serious/critical axe-core violations`);
  await screenshot(page, group, name);
}

/** On the IdP's login form (Keycloak double or oidc-provider): fill in and submit. */
export async function idpLogin(page: Page, username: string, password: string): Promise<void> {
  await page.locator('#username').fill(username);
  await page.locator('#password').fill(password);
  await Promise.all([page.waitForLoadState('domcontentloaded'), page.locator('[type=submit]').first().click()]);
}
