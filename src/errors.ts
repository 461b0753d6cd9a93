/**
 * Faults carry a stable `code`; callers branch on it, never on message text.
 * Expected negatives (a wrong password) are values, not errors.
 */
export type ErrorCode =
  | 'ERR_CONFIG_INVALID'
  | 'ERR_DB_UNAVAILABLE'
  | 'ERR_DB_TIMEOUT'
  | 'ERR_DB_QUERY'
  | 'ERR_DB_CONFLICT'
  | 'ERR_IDP_UNAVAILABLE'
  | 'ERR_IDP_TIMEOUT'
  | 'ERR_IDP_AUTH'
  | 'ERR_IDP_FORBIDDEN'
  | 'ERR_IDP_NOT_FOUND'
  | 'ERR_IDP_BAD_RESPONSE'
  | 'ERR_IDP_NOT_CONFIGURED'
  | 'ERR_NOT_FOUND'
  | 'ERR_INVALID_INPUT'
  | 'ERR_REFUSED'
  | 'ERR_HASH_MALFORMED'
  | 'ERR_HASH_UNSUPPORTED'
  | 'ERR_HASH_WORKER'
  | 'ERR_LOCK_HELD'
  | 'ERR_DEADLINE'
  | 'ERR_OVERLOADED';

export class MailauthError extends Error {
  readonly code: ErrorCode;
  /** Extra structured context that is safe to log (never secrets). */
  readonly details: Record<string, unknown> | undefined;

  constructor(code: ErrorCode, message: string, options: { cause?: unknown; details?: Record<string, unknown> } = {}) {
    super(message, options.cause === undefined ? undefined : { cause: options.cause });
    this.name = 'MailauthError';
    this.code = code;
    this.details = options.details;
  }
}

export function isMailauthError(err: unknown, code?: ErrorCode): err is MailauthError {
  return err instanceof MailauthError && (code === undefined || err.code === code);
}
