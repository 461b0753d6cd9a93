import { isMailauthError } from '../errors.js';
import { IN_THREAD } from './crypt.js';
import { parseWithReason } from './parse.js';
import { malformed, unsupported, type VerifyResult } from './result.js';
import { decodePayload, lookupScheme } from './scheme-table.js';
import type { ShaCryptRunner } from './unix-crypt.js';

export interface VerifyOptions {
  /** Scheme for values without a `{SCHEME}` prefix, as Dovecot's default_pass_scheme. Default 'CRYPT'. */
  defaultScheme?: string;
  /** Where SHA-crypt runs: this thread by default, the daemon's hash pool (hash-pool.ts) there. */
  shaCrypt?: ShaCryptRunner;
}

/**
 * Never matches what it cannot fully evaluate, and throws only when the hash pool could not
 * run a check (ERR_HASH_WORKER: a fault of the process, not of the stored value). An empty password is
 * verified like any other; refusing it is the caller's policy. The password is text
 * (verified as its UTF-8 bytes) or the exact bytes a client sent (issue 16: a Latin-1
 * password through Dovecot is not valid UTF-8, and Dovecot verifies the bytes as sent).
 */
export async function verify(stored: string, password: string | Uint8Array, opts: VerifyOptions = {}): Promise<VerifyResult> {
  let scheme = '';
  try {
    if (typeof stored !== 'string' || (typeof password !== 'string' && !(password instanceof Uint8Array))) {
      return malformed('', 'hash and password must be strings');
    }
    const parsed = parseWithReason(stored, opts.defaultScheme ?? 'CRYPT');
    if ('error' in parsed) return malformed('', parsed.error);
    scheme = parsed.scheme;
    const spec = lookupScheme(parsed.scheme);
    if (spec === undefined) return unsupported(parsed.scheme, `unknown password scheme ${parsed.scheme}`);
    scheme = spec.name;
    const raw = decodePayload(spec, parsed.encoding, parsed.payload);
    if (typeof raw === 'string') return malformed(spec.name, raw);
    const bytes = typeof password === 'string' ? Buffer.from(password, 'utf8') : Buffer.from(password.buffer, password.byteOffset, password.byteLength);
    return await spec.check(raw, bytes, opts.shaCrypt ? { shaCrypt: opts.shaCrypt } : IN_THREAD);
  } catch (err) {
    if (isMailauthError(err, 'ERR_HASH_WORKER')) throw err;
    // Every family validates first; this is the backstop that keeps verify total.
    return malformed(scheme, 'unexpected error while verifying');
  }
}

/**
 * The scheme verify() would report for this value, or null when it names no scheme we
 * know. For multi-format labels it is the format found ({CRYPT}$6$… → SHA512-CRYPT).
 */
export function schemeOf(stored: string): string | null {
  try {
    const parsed = parseWithReason(stored, 'CRYPT');
    if ('error' in parsed) return null;
    const spec = lookupScheme(parsed.scheme);
    if (spec === undefined) return null;
    if (spec.effective === undefined) return spec.name;
    const raw = decodePayload(spec, parsed.encoding, parsed.payload);
    return (typeof raw === 'string' ? null : spec.effective(raw)) ?? spec.name;
  } catch {
    return null;
  }
}
