import { createHash, timingSafeEqual } from 'node:crypto';

// Buffer.from(x, 'base64'|'hex') silently skips bad input, which would turn a corrupt
// row into a quiet mismatch; every decoder here validates first and returns null instead.

const BASE64 = /^(?:[A-Za-z0-9+/]{4})*(?:[A-Za-z0-9+/]{2}==|[A-Za-z0-9+/]{3}=)?$/;
const BASE64_UNPADDED = /^[A-Za-z0-9+/]*$/;
const HEX = /^(?:[0-9A-Fa-f]{2})*$/;

/**
 * Dovecot's base64 (what `{SCHEME.B64}` and the base64-default schemes use): padding
 * required, whitespace ignored (doveadm 2.3 accepts `{SHA1}W6ph 5Mm…=`).
 */
export function decodeBase64Padded(text: string): Buffer | null {
  const compact = text.replace(/[ \t\r\n]/g, '');
  return BASE64.test(compact) ? Buffer.from(compact, 'base64') : null;
}

/**
 * Base64 with optional padding, also reading passlib's "adapted base64" ('.' for '+'),
 * as 389-ds does for `{PBKDF2-SHA512}` values imported from OpenLDAP/passlib.
 */
export function decodeBase64Lenient(text: string): Buffer | null {
  let s = text.replace(/\./g, '+');
  const pad = s.indexOf('=');
  if (pad >= 0) {
    if (!/^={1,2}$/.test(s.slice(pad)) || s.length % 4 !== 0) return null;
    s = s.slice(0, pad);
  }
  if (!BASE64_UNPADDED.test(s) || s.length % 4 === 1) return null;
  return Buffer.from(s, 'base64');
}

export function decodeHex(text: string): Buffer | null {
  return HEX.test(text) ? Buffer.from(text, 'hex') : null;
}

/** Constant-time for equal lengths; callers only pass lengths that carry no secret. */
export function equalBytes(a: Uint8Array, b: Uint8Array): boolean {
  return a.length === b.length && timingSafeEqual(a, b);
}

/**
 * Equality of two secrets whose lengths are themselves secret (plaintext schemes):
 * comparing fixed-size digests keeps the password length out of the timing.
 */
export function equalSecret(a: Uint8Array, b: Uint8Array): boolean {
  const da = createHash('sha256').update(a).digest();
  const db = createHash('sha256').update(b).digest();
  return timingSafeEqual(da, db) && a.length === b.length;
}

/** Payloads of text formats (crypt strings, PHC strings) must be printable ASCII to be parsed at all. */
export function asciiText(raw: Buffer): string | null {
  for (const byte of raw) if (byte < 0x20 || byte > 0x7e) return null;
  return raw.toString('latin1');
}
