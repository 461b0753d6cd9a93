/**
 * Two unrelated PBKDF2 layouts share the name:
 *
 * {PBKDF2} — Dovecot's own: `$1$<salt>$<rounds>$<hex>`, HMAC-SHA1, 20-byte key. The
 *   salt is used as the literal text between the dollars (Dovecot does not decode it).
 *
 * {PBKDF2-SHA512} — 389-ds / FreeIPA's pwdchan plugin: `<iterations>$<salt>$<hash>`,
 *   HMAC-SHA512. 389-ds writes standard base64 with padding (24-byte salt, 64-byte
 *   hash) and also reads passlib/OpenLDAP "adapted base64" ('.' for '+', no padding);
 *   the key length is whatever the stored hash decodes to. We read both, like 389-ds.
 *
 * Both run on the libuv pool via crypto.pbkdf2, not on the event loop.
 */
import { pbkdf2 } from 'node:crypto';
import { promisify } from 'node:util';
import { decodeBase64Lenient, decodeHex, equalBytes } from './encoding.js';
import { MAX_PBKDF2_ITERATIONS } from './limits.js';
import { compared, malformed, type VerifyResult } from './result.js';

const derive = promisify(pbkdf2);

const ITERATIONS = /^[1-9][0-9]{0,9}$/;

export async function verifyDovecotPbkdf2(text: string, password: Buffer): Promise<VerifyResult> {
  const scheme = 'PBKDF2';
  if (!text.startsWith('$1$')) return malformed(scheme, 'expected $1$salt$rounds$hex');
  const fields = text.slice(3).split('$');
  if (fields.length !== 3) return malformed(scheme, 'expected $1$salt$rounds$hex');
  const [salt, roundsText, hexKey] = fields as [string, string, string];
  if (!ITERATIONS.test(roundsText)) return malformed(scheme, 'rounds is not a positive number');
  const rounds = Number(roundsText);
  if (rounds > MAX_PBKDF2_ITERATIONS) return malformed(scheme, `rounds too high (limit ${MAX_PBKDF2_ITERATIONS})`);
  const key = decodeHex(hexKey);
  if (key === null || key.length !== 20) return malformed(scheme, 'key is not 40 hex digits');
  const computed = await derive(password, Buffer.from(salt, 'latin1'), rounds, 20, 'sha1');
  return compared(equalBytes(computed, key), scheme);
}

export async function verifyPbkdf2Sha512(text: string, password: Buffer): Promise<VerifyResult> {
  const scheme = 'PBKDF2-SHA512';
  const fields = text.split('$');
  if (fields.length !== 3) return malformed(scheme, 'expected iterations$salt$hash');
  const [iterationsText, saltText, hashText] = fields as [string, string, string];
  if (!ITERATIONS.test(iterationsText)) return malformed(scheme, 'iterations is not a positive number');
  const iterations = Number(iterationsText);
  if (iterations > MAX_PBKDF2_ITERATIONS) return malformed(scheme, `iterations too high (limit ${MAX_PBKDF2_ITERATIONS})`);
  const salt = decodeBase64Lenient(saltText);
  if (salt === null || salt.length === 0) return malformed(scheme, 'salt missing or not base64');
  const key = decodeBase64Lenient(hashText);
  // Below 16 bytes is no real 389-ds/passlib output, only a truncated row.
  if (key === null || key.length < 16 || key.length > 64) return malformed(scheme, 'hash not base64 of 16..64 bytes');
  const computed = await derive(password, salt, iterations, key.length, 'sha512');
  return compared(equalBytes(computed, key), scheme);
}
