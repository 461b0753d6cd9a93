/**
 * The one vocabulary every scheme family answers in. Corrupt data is not a wrong
 * password: anything we cannot evaluate is 'malformed' or 'unsupported_scheme',
 * never 'mismatch' and never 'match'.
 */
export type VerifyOutcome = 'match' | 'mismatch' | 'unsupported_scheme' | 'malformed';

export interface VerifyResult {
  outcome: VerifyOutcome;
  /**
   * Canonical upper-case name of the algorithm that was (or would have been) run;
   * '' when the stored value could not be parsed at all. For labels that accept
   * several formats ({CRYPT}, {MD5}, {ARGON2I}…) this is the format actually found,
   * so policy checks see e.g. DES-CRYPT rather than the CRYPT label it hid behind.
   */
  scheme: string;
  /** Safe to log: built from fixed text and scheme names only, never from the hash or password. */
  reason?: string;
}

export function compared(equal: boolean, scheme: string): VerifyResult {
  return { outcome: equal ? 'match' : 'mismatch', scheme };
}

export function malformed(scheme: string, detail: string): VerifyResult {
  return {
    outcome: 'malformed',
    scheme,
    reason: scheme === '' ? `malformed hash: ${detail}` : `malformed hash for scheme ${scheme}: ${detail}`,
  };
}

export function unsupported(scheme: string, detail: string): VerifyResult {
  return { outcome: 'unsupported_scheme', scheme, reason: detail };
}
