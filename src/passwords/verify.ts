import { parseWithReason } from './parse.js';
import { malformed, unsupported, type VerifyResult } from './result.js';
import { decodePayload, lookupScheme } from './scheme-table.js';

export interface VerifyOptions {
  /** Scheme for values without a `{SCHEME}` prefix, as Dovecot's default_pass_scheme. Default 'CRYPT'. */
  defaultScheme?: string;
}

/**
 * Never throws and never matches what it cannot fully evaluate. An empty password is
 * verified like any other; refusing it is the caller's policy.
 */
export async function verify(stored: string, password: string, opts: VerifyOptions = {}): Promise<VerifyResult> {
  let scheme = '';
  try {
    if (typeof stored !== 'string' || typeof password !== 'string') return malformed('', 'hash and password must be strings');
    const parsed = parseWithReason(stored, opts.defaultScheme ?? 'CRYPT');
    if ('error' in parsed) return malformed('', parsed.error);
    scheme = parsed.scheme;
    const spec = lookupScheme(parsed.scheme);
    if (spec === undefined) return unsupported(parsed.scheme, `unknown password scheme ${parsed.scheme}`);
    scheme = spec.name;
    const raw = decodePayload(spec, parsed.encoding, parsed.payload);
    if (typeof raw === 'string') return malformed(spec.name, raw);
    return await spec.check(raw, Buffer.from(password, 'utf8'));
  } catch {
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
