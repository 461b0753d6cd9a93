/** The decision's vocabulary: requests in, one of five results out (STYLE 1). */
import type { AccessFlag } from '../config/index.js';
import type { AccountRow, AppPasswordRow } from '../db/index.js';
import type { Logger } from '../logging/index.js';
import type { VerifyResult } from '../passwords/index.js';

export const PASSDB_RESULTS = ['ok', 'password_mismatch', 'user_unknown', 'user_disabled', 'internal_failure'] as const;
export type PassdbResultCode = (typeof PASSDB_RESULTS)[number];

export const USERDB_RESULTS = ['ok', 'user_unknown', 'internal_failure'] as const;
export type UserdbResultCode = (typeof USERDB_RESULTS)[number];

/** What Dovecot tells us about one login (the v1 passdb body, camel-cased). */
export interface PassdbRequest {
  user: string;
  password: string;
  /**
   * The password's exact bytes when they are not valid UTF-8 (issue 16: a Latin-1 password sent
   * through Dovecot; the Lua script sends it as password_b64). Then `password` is ignored.
   */
  passwordBytes?: Uint8Array;
  service: string;
  /** Client address; empty when Dovecot has none (`doveadm auth test`). */
  remoteIp: string;
  localIp?: string;
  mech?: string;
  secured?: boolean;
  /** Dovecot's session id, kept for log correlation. */
  session?: string;
  /**
   * Only the mailbox's own password counts, never an app password (the portal's sign-in:
   * an app password given to a mail program must not open the page that makes more of them).
   */
  noAppPasswords?: boolean;
}

export interface PassdbResult {
  result: PassdbResultCode;
  /** The canonical mailbox name (as stored) on `ok`. */
  user?: string;
  /** Extra passdb fields for Dovecot; none are produced yet. */
  fields?: Record<string, string>;
  /** Why, in words that are safe to log and to show the caller (never a secret). */
  reason?: string;
}

export interface UserdbRequest {
  user: string;
  service?: string;
}

export interface UserdbResult {
  result: UserdbResultCode;
  user?: string;
  fields?: Record<string, string>;
  reason?: string;
}

/** Everything one login needs from the database: the account cache (issue 4) stores exactly this. */
export interface Account {
  mailbox: AccountRow;
  /** Active app passwords of the mailbox, in id order. */
  appPasswords: AppPasswordRow[];
}

/** Loads an account; null only when the database answered "no such mailbox". Throws coded errors on faults. */
export type AccountLoader = (username: string, signal: AbortSignal) => Promise<Account | null>;

/**
 * Hash verification; the verify cache (issue 4) and the hash queue (issue 16) wrap this.
 * The password is text, or the exact bytes the client sent when they are not UTF-8.
 * `signal` is the request's deadline signal (deadline.ts): the hash queue drops a check
 * whose request was already answered and refuses one that cannot finish in time, by
 * throwing ERR_DEADLINE / ERR_OVERLOADED; a wrong password or a bad hash is never thrown.
 */
// Declared through a method so that its parameters are checked bivariantly: verifiers written
// for text only (test doubles, `(stored, pw: string) => …`) still fit; only the real chain
// (verify cache → hash queue → passwords.verify) is ever handed bytes.
export type HashVerifier = {
  verify(stored: string, password: string | Uint8Array, signal?: AbortSignal): Promise<VerifyResult>;
}['verify'];

/** What a password source answers: a subset of the vocabulary, never an exception for a wrong password. */
export interface SourceOutcome {
  result: 'ok' | 'password_mismatch' | 'user_disabled' | 'internal_failure';
  reason?: string;
}

export interface SourceContext {
  /** The password's bytes when they are not UTF-8; only the mailcow source is ever given them. */
  passwordBytes?: Uint8Array;
  logger: Logger;
  signal: AbortSignal;
  service: string;
  flag: AccessFlag;
  remoteIp: string;
  verifyHash: HashVerifier;
}

/** One backend that owns a mailbox's primary password, chosen by the row's `authsource` (STYLE 4). */
export interface PasswordSource {
  readonly name: string;
  verify(account: Account, password: string, ctx: SourceContext): Promise<SourceOutcome>;
}

/**
 * What login provisioning needs to know about the login it may create a mailbox for: the same
 * request context a source gets (passdb.ts builds both), without the password's raw bytes.
 */
export type UnknownMailboxContext = Omit<SourceContext, 'passwordBytes'>;

/**
 * The answer of login provisioning for a login without a mailbox:
 * `provisioned` — created, and the password verified against the IdP;
 * `exists` — someone else created it meanwhile, decide as for any mailbox;
 * otherwise the login's result.
 */
export type UnknownMailboxOutcome =
  | { result: 'provisioned'; username: string }
  | { result: 'exists' }
  | { result: 'user_unknown' | 'password_mismatch' | 'internal_failure'; reason: string };

/** Called when the database has no mailbox for a login (issue 7: Keycloak login provisioning). */
export type UnknownMailboxHandler = (user: string, password: string, ctx: UnknownMailboxContext) => Promise<UnknownMailboxOutcome>;

/** What the token check of a token login (XOAUTH2/OAUTHBEARER) answers (issue 20, token-login.ts). */
export type TokenVerifyOutcome =
  | { result: 'ok'; via: 'jwt' | 'introspection'; email: string }
  | { result: 'password_mismatch' | 'internal_failure'; reason: string };

/** The seam a token login goes through: absent, XOAUTH2/OAUTHBEARER logins are refused. */
export interface TokenLogin {
  /** Longest token accepted (oauth.max_token_bytes); tokens are longer than passwords. */
  maxTokenBytes: number;
  /** The token is valid; whose it is (its email claim). */
  identify(token: string, ctx: { logger: Logger; signal: AbortSignal }): Promise<TokenVerifyOutcome>;
  /** The token is valid, for this login user. */
  verify(user: string, token: string, ctx: { logger: Logger; signal: AbortSignal }): Promise<TokenVerifyOutcome>;
  /** A token login for a mailbox that does not exist yet. */
  provision(user: string, ctx: UnknownMailboxContext): Promise<UnknownMailboxOutcome>;
}

/** A token presented to mailauth's own introspection endpoint (Dovecot 2.4's oauth2 passdb). */
export interface IntrospectionRequest {
  token: string;
  /** Dovecot's protocol (X-Dovecot-Auth-Service): imap, pop3, smtp, sieve… */
  service: string;
  remoteIp: string;
}

/** A successful login, as the login log records it (mailcow's sasl_log). */
export interface LoginRecord {
  service: string;
  /** app_passwd.id, 0 when the mailbox's own password was used. */
  appPassword: number;
  username: string;
  realRip: string;
}

export interface LoginRecorder {
  record(entry: LoginRecord): void;
}

export interface Clock {
  /** Milliseconds since the epoch. */
  now(): number;
}

export const systemClock: Clock = { now: () => Date.now() };
