/**
 * Splitting `{SCHEME[.ENC]}payload` the way Dovecot's password_get_scheme() does.
 *
 * No-prefix rule: a value without `{…}` is read with the caller's default scheme,
 * like Dovecot's passdb `default_pass_scheme` (default here: CRYPT). Under CRYPT
 * the value must then look like a crypt(3) string, else it is 'malformed' — we never
 * guess "plaintext". One exception is copied from Dovecot: a bare `$1$…` is always
 * MD5-CRYPT, whatever the default. A `{` without a closing `}` is malformed (Dovecot
 * would feed the whole text to the default scheme, which can only fail).
 */
import type { PayloadEncoding } from './scheme-table.js';

export interface ParsedStored {
  /** Upper-case label without the encoding suffix; an unknown suffix stays in the name. */
  scheme: string;
  encoding?: PayloadEncoding;
  payload: string;
}

const LABEL = /^([A-Za-z0-9][A-Za-z0-9-]{0,31})(?:\.([A-Za-z0-9]{1,16}))?$/;

function parseLabel(label: string): Omit<ParsedStored, 'payload'> | null {
  const m = LABEL.exec(label);
  if (!m) return null;
  const scheme = (m[1] as string).toUpperCase();
  const suffix = m[2]?.toLowerCase();
  if (suffix === undefined) return { scheme };
  if (suffix === 'b64' || suffix === 'base64') return { scheme, encoding: 'b64' };
  if (suffix === 'hex') return { scheme, encoding: 'hex' };
  // Dovecot treats an unknown suffix as an unknown scheme; keep it visible in the name.
  return { scheme: `${scheme}.${suffix.toUpperCase()}` };
}

export function parseWithReason(stored: string, defaultScheme: string): ParsedStored | { error: string } {
  if (stored.length === 0) return { error: 'empty' };
  if (stored.startsWith('{')) {
    const close = stored.indexOf('}');
    if (close < 0) return { error: 'unterminated {SCHEME} prefix' };
    const label = parseLabel(stored.slice(1, close));
    if (label === null) return { error: 'invalid scheme name in {SCHEME} prefix' };
    return { ...label, payload: stored.slice(close + 1) };
  }
  if (stored.startsWith('$1$')) return { scheme: 'MD5-CRYPT', payload: stored };
  const label = parseLabel(defaultScheme);
  if (label === null) return { error: 'invalid default scheme name' };
  return { ...label, payload: stored };
}

export function parseStored(stored: string, defaultScheme = 'CRYPT'): ParsedStored | null {
  const parsed = parseWithReason(stored, defaultScheme);
  return 'error' in parsed ? null : parsed;
}
