/**
 * crypt(3) strings as Dovecot reads them. Dovecot verifies {CRYPT}, {DES-CRYPT},
 * {SHA256-CRYPT} and {SHA512-CRYPT} by handing the stored string to libc crypt(),
 * which picks the algorithm from the string itself — so `{SHA512-CRYPT}$1$…` is an
 * MD5-crypt hash that Dovecot accepts. We accept the same combinations but report
 * the algorithm actually found. {BLF-CRYPT} must be bcrypt and {MD5-CRYPT} must be
 * `$1$` (Dovecot checks those itself).
 */
import unixCryptTD from 'unix-crypt-td-js';
import { verifyBcrypt } from './bcrypt.js';
import { equalBytes } from './encoding.js';
import { MAX_CRYPT_PASSWORD_BYTES, MAX_SHA_CRYPT_ROUNDS } from './limits.js';
import { compared, malformed, unsupported, type VerifyResult } from './result.js';
import {
  md5CryptChecksum,
  SHA_CRYPT_DEFAULT_ROUNDS,
  SHA_CRYPT_MAX_SALT,
  SHA_CRYPT_MIN_ROUNDS,
  shaCryptInThread,
  type ShaCryptRunner,
} from './unix-crypt.js';

/** Where verification may run its costly parts; the daemon passes its hash pool. */
export interface VerifyEnv {
  shaCrypt: ShaCryptRunner;
}

export const IN_THREAD: VerifyEnv = Object.freeze({ shaCrypt: shaCryptInThread });

export type CryptFormat = 'DES-CRYPT' | 'MD5-CRYPT' | 'SHA256-CRYPT' | 'SHA512-CRYPT' | 'BLF-CRYPT';

export const ANY_CRYPT: readonly CryptFormat[] = ['DES-CRYPT', 'MD5-CRYPT', 'SHA256-CRYPT', 'SHA512-CRYPT', 'BLF-CRYPT'];

// Formats libxcrypt knows but mailcow never accepted: recognisable, so 'unsupported'
// rather than 'malformed'.
const OTHER_CRYPT_FORMATS: readonly [RegExp, string][] = [
  [/^\$y\$/, 'yescrypt'],
  [/^\$gy\$/, 'gost-yescrypt'],
  [/^\$7\$/, 'scrypt'],
  [/^\$sha1\$/, 'sha1crypt'],
  [/^\$md5[$,]/, 'SunMD5'],
  [/^\$3\$/, 'NT-hash crypt'],
  [/^\$2\$/, 'original bcrypt ($2$)'],
  [/^_[./0-9A-Za-z]{19}$/, 'BSDi extended DES'],
  [/^\$argon2/, 'argon2 inside a crypt label'],
];

const DES = /^[./0-9A-Za-z]{13}$/;

export function cryptFormatOf(text: string): CryptFormat | null {
  if (text.startsWith('$1$')) return 'MD5-CRYPT';
  if (text.startsWith('$5$')) return 'SHA256-CRYPT';
  if (text.startsWith('$6$')) return 'SHA512-CRYPT';
  if (/^\$2[abxy]\$/.test(text)) return 'BLF-CRYPT';
  if (DES.test(text)) return 'DES-CRYPT';
  return null;
}

export async function verifyCrypt(
  text: string,
  password: Buffer,
  label: string,
  accepted: readonly CryptFormat[],
  env: VerifyEnv = IN_THREAD,
): Promise<VerifyResult> {
  const format = cryptFormatOf(text);
  if (format === null) {
    const other = OTHER_CRYPT_FORMATS.find(([re]) => re.test(text));
    if (other) return unsupported(label, `unsupported crypt(3) format for scheme ${label}: ${other[1]}`);
    return malformed(label, 'not a crypt(3) string');
  }
  if (!accepted.includes(format)) return malformed(label, `expected ${accepted.join(' or ')}, found ${format}`);

  switch (format) {
    case 'BLF-CRYPT':
      return verifyBcrypt(text, password);
    case 'DES-CRYPT':
      return verifyDes(text, password);
    case 'MD5-CRYPT':
      return verifyMd5Crypt(text, password);
    case 'SHA256-CRYPT':
    case 'SHA512-CRYPT':
      return verifyShaCrypt(format, text, password, env);
  }
}

function verifyDes(text: string, password: Buffer): VerifyResult {
  // DES crypt reads bytes up to the first NUL, like the C string it was written for.
  const key = Array.from(password.subarray(0, 8));
  const nul = key.indexOf(0);
  const computed = unixCryptTD(nul >= 0 ? key.slice(0, nul) : key, text.slice(0, 2));
  return compared(equalBytes(Buffer.from(computed, 'latin1'), Buffer.from(text, 'latin1')), 'DES-CRYPT');
}

const MD5_CRYPT = /^\$1\$([^$]*)\$([./0-9A-Za-z]{22})$/;

function verifyMd5Crypt(text: string, password: Buffer): VerifyResult {
  const m = MD5_CRYPT.exec(text);
  if (!m) return malformed('MD5-CRYPT', 'expected $1$salt$ followed by a 22-character checksum');
  const salt = Buffer.from(m[1] as string, 'latin1');
  if (salt.length > 8) return malformed('MD5-CRYPT', 'salt longer than 8 characters');
  if (password.length > MAX_CRYPT_PASSWORD_BYTES) return tooLong('MD5-CRYPT');
  const checksum = md5CryptChecksum(password, salt);
  return compared(equalBytes(Buffer.from(checksum), Buffer.from(m[2] as string)), 'MD5-CRYPT');
}

// Salt: anything but '$' (glibc stops there), at most 16; an explicit rounds= must be
// canonical, because crypt() re-emits it canonically and would never equal ours.
const SHA_CRYPT = /^\$([56])\$(?:rounds=([^$]*)\$)?([^$]*)\$([./0-9A-Za-z]*)$/;

async function verifyShaCrypt(
  scheme: 'SHA256-CRYPT' | 'SHA512-CRYPT',
  text: string,
  password: Buffer,
  env: VerifyEnv,
): Promise<VerifyResult> {
  const m = SHA_CRYPT.exec(text);
  if (!m) return malformed(scheme, 'expected $id$[rounds=N$]salt$checksum');
  const [, , roundsText, saltText, checksum] = m as unknown as [string, string, string | undefined, string, string];

  let rounds = SHA_CRYPT_DEFAULT_ROUNDS;
  if (roundsText !== undefined) {
    if (!/^[1-9][0-9]{0,9}$/.test(roundsText)) return malformed(scheme, 'rounds is not a canonical number');
    rounds = Number(roundsText);
    // glibc would clamp below 1000 and emit rounds=1000, so such a row can never match.
    if (rounds < SHA_CRYPT_MIN_ROUNDS) return malformed(scheme, `rounds below minimum ${SHA_CRYPT_MIN_ROUNDS}`);
    if (rounds > MAX_SHA_CRYPT_ROUNDS) return malformed(scheme, `rounds too high (limit ${MAX_SHA_CRYPT_ROUNDS})`);
  }
  const salt = Buffer.from(saltText, 'latin1');
  if (salt.length > SHA_CRYPT_MAX_SALT) return malformed(scheme, `salt longer than ${SHA_CRYPT_MAX_SALT} characters`);
  const expectedLength = scheme === 'SHA256-CRYPT' ? 43 : 86;
  if (checksum.length !== expectedLength) return malformed(scheme, `checksum is not ${expectedLength} characters`);
  if (password.length > MAX_CRYPT_PASSWORD_BYTES) return tooLong(scheme);

  const computed = await env.shaCrypt(scheme === 'SHA256-CRYPT' ? 'sha256' : 'sha512', password, salt, rounds);
  return compared(equalBytes(Buffer.from(computed), Buffer.from(checksum)), scheme);
}

function tooLong(scheme: string): VerifyResult {
  // Not 'malformed': the row is fine; no crypt(3) hash can come from such a password.
  return { outcome: 'mismatch', scheme, reason: `password longer than ${MAX_CRYPT_PASSWORD_BYTES} bytes` };
}
