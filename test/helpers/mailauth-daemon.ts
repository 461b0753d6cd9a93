/**
 * The real mailauth daemon for the Dovecot end-to-end tests, built in-process
 * from its own parts (createAuthenticator + createLoginLog + createServer) on
 * 127.0.0.1:0 with a shared token, against a test database; and the small world
 * of mailboxes those tests log in with.
 */
import { randomBytes } from 'node:crypto';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { createAuthenticator, createLoginLog } from '../../src/auth/index.js';
import type { LoginLog } from '../../src/auth/index.js';
import { insertAppPassword } from '../../src/db/index.js';
import { silentLogger } from '../../src/logging/index.js';
import { hash } from '../../src/passwords/index.js';
import { createServer } from '../../src/server/index.js';
import { seedDomain, seedMailbox, testConfig } from './db.js';
import type { TestDatabase } from './db.js';

interface Teardown {
  teardown(fn: () => unknown): void;
}

export interface MailauthUnderTest {
  url: string;
  /** The file holding the shared token (what the Lua settings' token_file names); null without one. */
  tokenFile: string | null;
  loginLog: LoginLog;
  /** Stop answering (the listener closes): Dovecot then sees connection refused. */
  stop(): Promise<void>;
}

/** `token: false` runs the loopback listener without a shared token, as mailcow's own Lua script sends none. */
export async function startMailauth(t: Teardown, tdb: TestDatabase, opts: { token?: boolean } = {}): Promise<MailauthUnderTest> {
  const dir = mkdtempSync(join(tmpdir(), 'mat-'));
  t.teardown(() => rmSync(dir, { recursive: true, force: true }));
  let tokenFile: string | null = null;
  if (opts.token !== false) {
    tokenFile = join(dir, 'token');
    writeFileSync(tokenFile, `${randomBytes(24).toString('base64url')}\n`, { mode: 0o600 });
  }
  const config = testConfig(tdb, {
    listen: { address: '127.0.0.1:0', token_file: tokenFile },
    login_log: { flush_interval: '200ms' },
  });
  const logger = silentLogger();
  const loginLog = createLoginLog({ db: tdb.db, logger, config: config.loginLog });
  const authenticator = createAuthenticator({ db: tdb.db, logger, config: config.auth, loginLog });
  const server = createServer({ config, authenticator, db: tdb.db, logger });
  const [address] = await server.listen();
  if (!address) throw new Error('mailauth did not listen');
  let stopped = false;
  const stop = async (): Promise<void> => {
    if (stopped) return;
    stopped = true;
    await server.close();
    await loginLog.stop();
  };
  t.teardown(stop);
  return { url: address.url, tokenFile, loginLog, stop };
}

export const PASSWORDS = {
  alice: 'alice-Secret-1',
  aliceApp: 'app-pw-smtp-only-7Qz',
  bob: 'bob-Secret-2',
  carol: 'carol-Secret-3',
  dave: 'dave-Secret-4',
  erin: 'erin-Secret-5',
} as const;

/**
 * example.org with: alice (local BLF-CRYPT password, plus an app password for SMTP
 * only), bob (disabled), carol (active = 2: receives mail, may not log in), dave
 * (POP3 but no IMAP), erin (SSHA256; never logs in before mailauth is stopped).
 */
export async function seedDovecotWorld(tdb: TestDatabase): Promise<void> {
  await seedDomain(tdb, 'example.org');
  const cost = { bcryptCost: 4 };
  await seedMailbox(tdb, 'alice@example.org', await hash('BLF-CRYPT', PASSWORDS.alice, cost));
  await insertAppPassword(tdb.db, {
    name: 'phone (smtp only)',
    mailbox: 'alice@example.org',
    domain: 'example.org',
    password: await hash('BLF-CRYPT', PASSWORDS.aliceApp, cost),
    access: { imap: 0, pop3: 0, smtp: 1, sieve: 0, eas: 0, dav: 0 },
  });
  await seedMailbox(tdb, 'bob@example.org', await hash('BLF-CRYPT', PASSWORDS.bob, cost), { active: 0 });
  await seedMailbox(tdb, 'carol@example.org', await hash('BLF-CRYPT', PASSWORDS.carol, cost), { active: 2 });
  await seedMailbox(tdb, 'dave@example.org', await hash('SSHA256', PASSWORDS.dave), { attributes: { imap_access: '0', pop3_access: '1' } });
  await seedMailbox(tdb, 'erin@example.org', await hash('SSHA256', PASSWORDS.erin));
}
