import { randomBytes } from 'node:crypto';
import { MailauthError } from '../errors.js';
import { hashArgon2 } from './argon2.js';
import { hashBcrypt } from './bcrypt.js';
import { hashSalted } from './digest.js';
import { CRYPT_ALPHABET, SHA_CRYPT_DEFAULT_ROUNDS, shaCryptChecksum } from './unix-crypt.js';
import { MAX_CRYPT_PASSWORD_BYTES } from './limits.js';

/** bcrypt reads at most this many bytes of a password and ignores the rest. */
export const BCRYPT_MAX_PASSWORD_BYTES = 72;

/**
 * What is wrong with hashing `password` under `scheme` (issue 16): `refuse` when verification
 * would always refuse the result (SHA-crypt above 512 bytes, libxcrypt's limit), `truncated`
 * when bcrypt would silently ignore everything past byte 72. The caller decides what a
 * truncation means (auth.bcrypt_long_password); hash() itself refuses the first.
 */
export function newPasswordProblem(scheme: string, password: string): { refuse?: string; truncated?: string } {
  const bytes = Buffer.byteLength(password, 'utf8');
  const name = scheme.toUpperCase();
  if ((name === 'SHA512-CRYPT' || name === 'SHA256-CRYPT') && bytes > MAX_CRYPT_PASSWORD_BYTES) {
    return { refuse: `${name} cannot take a password longer than ${MAX_CRYPT_PASSWORD_BYTES} bytes (this one has ${bytes}); verification would always refuse it` };
  }
  if (name === 'BLF-CRYPT' && bytes > BCRYPT_MAX_PASSWORD_BYTES) {
    return { truncated: `BLF-CRYPT uses only the first ${BCRYPT_MAX_PASSWORD_BYTES} bytes of a password (this one has ${bytes}); anything after them would not count` };
  }
  return {};
}

export type HashScheme = 'BLF-CRYPT' | 'ARGON2ID' | 'ARGON2I' | 'SHA512-CRYPT' | 'SHA256-CRYPT' | 'SSHA256' | 'SSHA512';

export interface HashOptions {
  /** BLF-CRYPT cost, default 10 like PHP's password_hash() (mailcow's writer). */
  bcryptCost?: number;
}

export const HASH_SCHEMES: readonly HashScheme[] = ['BLF-CRYPT', 'ARGON2ID', 'ARGON2I', 'SHA512-CRYPT', 'SHA256-CRYPT', 'SSHA256', 'SSHA512'];

const DEFAULT_BCRYPT_COST = 10;

function isHashScheme(name: string): name is HashScheme {
  return (HASH_SCHEMES as readonly string[]).includes(name);
}

/** 16 characters of the crypt alphabet; 256 is a multiple of 64, so `& 63` is unbiased. */
function cryptSalt(): string {
  return Array.from(randomBytes(16), (byte) => CRYPT_ALPHABET[byte & 63]).join('');
}

async function shaCrypt(id: '5' | '6', password: Buffer): Promise<string> {
  const salt = cryptSalt();
  const checksum = await shaCryptChecksum(id === '5' ? 'sha256' : 'sha512', password, Buffer.from(salt), SHA_CRYPT_DEFAULT_ROUNDS);
  // Like glibc and Dovecot: the default round count is not written out.
  return `$${id}$${salt}$${checksum}`;
}

/**
 * Returns `{SCHEME}…` exactly as Dovecot writes it. Only the schemes in HASH_SCHEMES
 * can be written; SSHA256/SSHA512 stay among them (though weak by the rule in
 * scheme-table.ts) because mailcow installs use them and the issue asks for them.
 */
export async function hash(scheme: string, password: string, opts: HashOptions = {}): Promise<string> {
  const name = typeof scheme === 'string' ? scheme.toUpperCase() : '';
  if (!isHashScheme(name)) {
    throw new MailauthError('ERR_HASH_UNSUPPORTED', `password scheme ${name || '(none)'} cannot be used for new passwords`, {
      details: { scheme: name, supported: HASH_SCHEMES },
    });
  }
  if (typeof password !== 'string') throw new MailauthError('ERR_INVALID_INPUT', 'password must be a string');
  const problem = newPasswordProblem(name, password).refuse;
  if (problem !== undefined) throw new MailauthError('ERR_INVALID_INPUT', problem);
  const bytes = Buffer.from(password, 'utf8');
  switch (name) {
    case 'BLF-CRYPT':
      return `{BLF-CRYPT}${await hashBcrypt(bytes, opts.bcryptCost ?? DEFAULT_BCRYPT_COST)}`;
    case 'ARGON2ID':
    case 'ARGON2I':
      return `{${name}}${await hashArgon2(name, bytes)}`;
    case 'SHA512-CRYPT':
      return `{SHA512-CRYPT}${await shaCrypt('6', bytes)}`;
    case 'SHA256-CRYPT':
      return `{SHA256-CRYPT}${await shaCrypt('5', bytes)}`;
    case 'SSHA256':
      return `{SSHA256}${hashSalted(bytes, 'sha256')}`;
    case 'SSHA512':
      return `{SSHA512}${hashSalted(bytes, 'sha512')}`;
  }
}
