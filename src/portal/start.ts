/**
 * Builds the portal from the daemon's own parts (the same account loader, hash
 * verifier, password sources and login log as Dovecot's logins) and starts its
 * listener. `mailauth serve` calls this when portal.listen is set.
 */
import type { Dispatcher } from 'undici';
import { createAuthenticator } from '../auth/index.js';
import type { AccountLoader, Authenticator, Clock, HashVerifier, LoginRecorder, PasswordSource } from '../auth/index.js';
import type { Config, PortalConfig } from '../config/index.js';
import type { Db } from '../db/index.js';
import type { IdpSettings } from '../idp/index.js';
import type { Logger } from '../logging/index.js';
import type { ListenAddress } from '../server/index.js';
import { createActions } from './actions.js';
import type { ChangeHook } from './actions.js';
import { createPortal } from './portal.js';
import type { Portal } from './portal.js';
import { createSignInClient } from './signin.js';

export interface StartPortalOptions {
  config: Config & { portal: PortalConfig };
  db: Db;
  logger: Logger;
  /** The decision's seams, shared with the daemon (caches included). */
  loadAccount: AccountLoader;
  verifyHash: HashVerifier;
  sources: ReadonlyMap<string, PasswordSource>;
  loginLog?: LoginRecorder;
  /** The identity_provider settings as the daemon currently sees them. */
  idpSettings: () => Promise<IdpSettings | null>;
  /** Every committed change goes through here (account cache, Dovecot). */
  changed: ChangeHook;
  /** Wraps the password sign-in decision (the daemon's brute-force throttle). */
  guard?: (a: Authenticator) => Authenticator;
  clock?: Clock;
  dispatcher?: Dispatcher;
}

export interface RunningPortal {
  portal: Portal;
  address: ListenAddress;
  close(): Promise<void>;
}

export async function startPortal(opts: StartPortalOptions): Promise<RunningPortal> {
  const { config } = opts;
  const logger = opts.logger.child({ component: 'portal' });
  // Service `portal`, mapped like any other in auth.services; imap_access when the admin did not map it.
  const services = { portal: config.auth.services.portal ?? 'imap' };
  const decide = createAuthenticator({
    db: opts.db,
    logger: logger.child({ component: 'portal-auth' }),
    config: { ...config.auth, services },
    loadAccount: opts.loadAccount,
    verifyHash: opts.verifyHash,
    sources: opts.sources,
    ...(opts.loginLog ? { loginLog: opts.loginLog } : {}),
    ...(opts.clock ? { clock: opts.clock } : {}),
  });
  const authenticator = opts.guard ? opts.guard(decide) : decide;
  const actions = createActions({
    db: opts.db,
    hashing: { scheme: config.auth.defaultScheme, bcryptCost: config.auth.bcryptCost },
    maxAppPasswords: config.auth.maxAppPasswords,
    maxPasswordBytes: config.auth.maxPasswordBytes,
    policy: config.portal.passwordPolicy,
    recentLogins: config.portal.recentLogins,
    changed: opts.changed,
  });
  const signIn = createSignInClient({
    settings: opts.idpSettings,
    emailClaim: config.portal.emailClaim,
    timeoutMs: config.idp.timeoutMs,
    ...(opts.dispatcher ? { dispatcher: opts.dispatcher } : {}),
  });
  const portal = createPortal({ config: config.portal, db: opts.db, logger, authenticator, actions, signIn, ...(opts.clock ? { clock: opts.clock } : {}) });
  let address: ListenAddress;
  try {
    address = await portal.listen();
  } catch (err) {
    await signIn.close();
    throw err;
  }
  logger.info({ address: address.url, publicUrl: config.portal.publicUrl }, 'portal listening');
  return { portal, address, close: () => portal.close() };
}
