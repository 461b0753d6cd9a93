/**
 * Plaintext and single-pass digest schemes. All of them are weak (see scheme-table.ts);
 * they exist so old rows keep working, and are verify-only except SSHA256/SSHA512,
 * which mailcow itself can be configured to write.
 */
import { createHash, randomBytes } from 'node:crypto';
import { equalBytes, equalSecret } from './encoding.js';
import { md4 } from './md4.js';
import { compared, malformed, type VerifyResult } from './result.js';

export type DigestAlgorithm = 'md4' | 'md5' | 'sha1' | 'sha256' | 'sha512';

export const DIGEST_LENGTH: Readonly<Record<DigestAlgorithm, number>> = { md4: 16, md5: 16, sha1: 20, sha256: 32, sha512: 64 };

function digest(algorithm: DigestAlgorithm, ...parts: Uint8Array[]): Buffer {
  if (algorithm === 'md4') return md4(Buffer.concat(parts));
  const h = createHash(algorithm);
  for (const part of parts) h.update(part);
  return h.digest();
}

/** `raw` has already been length-checked against DIGEST_LENGTH by the payload decoder. */
export function verifyDigest(raw: Buffer, password: Buffer, scheme: string, algorithm: DigestAlgorithm): VerifyResult {
  return compared(equalBytes(digest(algorithm, password), raw), scheme);
}

/** SMD5/SSHA*: digest(password ‖ salt) ‖ salt. The salt is whatever follows the digest. */
export function verifySalted(raw: Buffer, password: Buffer, scheme: string, algorithm: DigestAlgorithm): VerifyResult {
  const size = DIGEST_LENGTH[algorithm];
  if (raw.length === 0) return malformed(scheme, 'empty payload');
  if (raw.length < size) return malformed(scheme, `shorter than the ${size}-byte digest`);
  if (raw.length === size) return malformed(scheme, 'salt missing');
  const salt = raw.subarray(size);
  return compared(equalBytes(digest(algorithm, password, salt), raw.subarray(0, size)), scheme);
}

/**
 * Dovecot writes 4-byte salts; verifiers (Dovecot, mailcow's PHP) take any length,
 * so we use 16 random bytes.
 */
export function hashSalted(password: Buffer, algorithm: 'sha256' | 'sha512'): string {
  const salt = randomBytes(16);
  return Buffer.concat([digest(algorithm, password, salt), salt]).toString('base64');
}

export function verifyPlain(raw: Buffer, password: Buffer, scheme: string): VerifyResult {
  return compared(equalSecret(raw, password), scheme);
}

/**
 * `<length>-<password>`: the stored password was cut to <length> bytes, so a login
 * matches if its first <length> bytes do (Dovecot's plain_trunc_verify, byte for byte).
 */
export function verifyPlainTrunc(raw: Buffer, password: Buffer): VerifyResult {
  const scheme = 'PLAIN-TRUNC';
  const dash = raw.indexOf(0x2d);
  const prefix = dash < 0 ? '' : raw.subarray(0, dash).toString('latin1');
  if (dash <= 0 || !/^[0-9]{1,9}$/.test(prefix)) return malformed(scheme, 'missing <length>- prefix');
  const limit = Number(prefix);
  const stored = raw.subarray(dash + 1);
  if (stored.length === limit && password.length >= limit) {
    return compared(equalSecret(stored, password.subarray(0, limit)), scheme);
  }
  return compared(equalSecret(stored, password), scheme);
}
