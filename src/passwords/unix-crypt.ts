/**
 * MD5-crypt and SHA-crypt, written out by hand.
 *
 * Why not a package: Node has no crypt(3) binding, and the npm packages that offer
 * these ($1$/$5$/$6$) are small one-author projects without releases for years, some
 * with known bugs around long passwords or `rounds=`. Both algorithms are short and
 * fully specified — Poul-Henning Kamp's FreeBSD MD5-crypt and Ulrich Drepper's
 * "Unix crypt using SHA-256 and SHA-512" (2008) — and are checked here against
 * doveadm/libxcrypt vectors (test/fixtures/passwords/vectors.json).
 *
 * SHA-crypt is written as one self-contained function (shaCryptCore) so that the
 * daemon's hash pool can run it on worker threads; the round count is capped in
 * limits.ts (and by auth.hash_limits in the daemon) before we get here.
 */
import { createHash } from 'node:crypto';

export const CRYPT_ALPHABET = './0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz';

/** crypt(3)'s base64: little-endian 6-bit groups over a fixed byte permutation. */
function encodeGroups(bytes: Uint8Array, groups: readonly (readonly [number, number, number, number])[]): string {
  let out = '';
  for (const [i2, i1, i0, chars] of groups) {
    // -1 stands for a zero byte the spec feeds into the last, short group.
    const at = (i: number): number => (i < 0 ? 0 : (bytes[i] as number));
    let w = (at(i2) << 16) | (at(i1) << 8) | at(i0);
    for (let n = 0; n < chars; n++) {
      out += CRYPT_ALPHABET[w & 0x3f];
      w >>>= 6;
    }
  }
  return out;
}

const MD5_GROUPS = [
  [0, 6, 12, 4], [1, 7, 13, 4], [2, 8, 14, 4], [3, 9, 15, 4], [4, 10, 5, 4], [-1, -1, 11, 2],
] as const;

/** The 22-character checksum of `$1$salt$checksum`; salt is at most 8 bytes. */
export function md5CryptChecksum(password: Uint8Array, salt: Uint8Array): string {
  const alternate = createHash('md5').update(password).update(salt).update(password).digest();
  const ctx = createHash('md5').update(password).update('$1$').update(salt);
  for (let left = password.length; left > 0; left -= 16) ctx.update(alternate.subarray(0, Math.min(left, 16)));
  // The original C code "clears" a buffer here and feeds one of its bytes: always NUL.
  const firstByte = password.subarray(0, 1);
  for (let i = password.length; i > 0; i >>>= 1) ctx.update(i & 1 ? Buffer.of(0) : firstByte);
  let digest = ctx.digest();

  for (let round = 0; round < 1000; round++) {
    const c = createHash('md5');
    c.update(round & 1 ? password : digest);
    if (round % 3) c.update(salt);
    if (round % 7) c.update(password);
    c.update(round & 1 ? digest : password);
    digest = c.digest();
  }
  return encodeGroups(digest, MD5_GROUPS);
}

export const SHA_CRYPT_DEFAULT_ROUNDS = 5000;
export const SHA_CRYPT_MIN_ROUNDS = 1000;
export const SHA_CRYPT_MAX_SALT = 16;

/**
 * The checksum part of `$5$`/`$6$` for already-validated inputs: rounds within
 * [1000, cap], salt at most 16 bytes. Callers compare it to the stored checksum.
 *
 * Self-contained on purpose: it uses nothing but its arguments, so the hash pool
 * (hash-pool.ts) ships this very function's source text to its worker threads and
 * runs it there with the worker's own createHash. One algorithm, one copy: the
 * verifier without a pool (the CLI) runs it in-thread. Keep it free of imports and
 * module-level constants.
 */
export function shaCryptCore(
  hashFactory: (algorithm: string) => { update(data: Uint8Array | string): unknown; digest(): Uint8Array },
  variant: 'sha256' | 'sha512',
  password: Uint8Array,
  salt: Uint8Array,
  rounds: number,
): string {
  const ALPHABET = './0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz';
  const SHA256_ORDER = [
    [0, 10, 20, 4], [21, 1, 11, 4], [12, 22, 2, 4], [3, 13, 23, 4], [24, 4, 14, 4],
    [15, 25, 5, 4], [6, 16, 26, 4], [27, 7, 17, 4], [18, 28, 8, 4], [9, 19, 29, 4], [-1, 31, 30, 3],
  ];
  const SHA512_ORDER = [
    [0, 21, 42, 4], [22, 43, 1, 4], [44, 2, 23, 4], [3, 24, 45, 4], [25, 46, 4, 4], [47, 5, 26, 4],
    [6, 27, 48, 4], [28, 49, 7, 4], [50, 8, 29, 4], [9, 30, 51, 4], [31, 52, 10, 4], [53, 11, 32, 4],
    [12, 33, 54, 4], [34, 55, 13, 4], [56, 14, 35, 4], [15, 36, 57, 4], [37, 58, 16, 4], [59, 17, 38, 4],
    [18, 39, 60, 4], [40, 61, 19, 4], [62, 20, 41, 4], [-1, -1, 63, 2],
  ];
  const h = (): { update(data: Uint8Array | string): unknown; digest(): Uint8Array } => hashFactory(variant);
  const size = variant === 'sha256' ? 32 : 64;
  // Repeat `block` to exactly `length` bytes (the spec's P and S sequences).
  const stretch = (block: Uint8Array, length: number): Uint8Array => {
    const out = new Uint8Array(length);
    for (let i = 0; i < length; i += block.length) out.set(block.subarray(0, Math.min(block.length, length - i)), i);
    return out;
  };
  const alternate = (() => {
    const c = h();
    c.update(password);
    c.update(salt);
    c.update(password);
    return c.digest();
  })();

  const a = h();
  a.update(password);
  a.update(salt);
  let left = password.length;
  for (; left > size; left -= size) a.update(alternate);
  a.update(alternate.subarray(0, left));
  for (let i = password.length; i > 0; i >>>= 1) a.update(i & 1 ? alternate : password);
  let digest = a.digest();

  const dp = h();
  for (let i = 0; i < password.length; i++) dp.update(password);
  const p = stretch(dp.digest(), password.length);

  const ds = h();
  for (let i = 0; i < 16 + (digest[0] as number); i++) ds.update(salt);
  const s = stretch(ds.digest(), salt.length);

  for (let round = 0; round < rounds; round++) {
    const c = h();
    c.update(round & 1 ? p : digest);
    if (round % 3) c.update(s);
    if (round % 7) c.update(p);
    c.update(round & 1 ? digest : p);
    digest = c.digest();
  }

  // crypt(3)'s base64: little-endian 6-bit groups over a fixed byte permutation.
  let out = '';
  for (const [i2, i1, i0, chars] of variant === 'sha256' ? SHA256_ORDER : SHA512_ORDER) {
    const at = (i: number): number => (i < 0 ? 0 : (digest[i] as number));
    let w = (at(i2 as number) << 16) | (at(i1 as number) << 8) | at(i0 as number);
    for (let n = 0; n < (chars as number); n++) {
      out += ALPHABET[w & 0x3f];
      w >>>= 6;
    }
  }
  return out;
}

/** Runs SHA-crypt somewhere: in this thread (the default) or in the hash pool's workers. */
export type ShaCryptRunner = (variant: 'sha256' | 'sha512', password: Buffer, salt: Buffer, rounds: number) => Promise<string>;

/**
 * In this thread, in one piece: 5,000 rounds take ~12 ms, the 1,000,000-round cap ~2.4 s.
 * Fine for the CLI; the daemon hands SHA-crypt to its hash pool instead (issue 16: on the
 * event loop, a flood of SHA-crypt guesses stalled every other login and /healthz).
 */
export const shaCryptInThread: ShaCryptRunner = async (variant, password, salt, rounds) =>
  shaCryptCore(createHash, variant, password, salt, rounds);

/** The checksum part of `$5$`/`$6$`, in this thread (see shaCryptCore). */
export function shaCryptChecksum(variant: 'sha256' | 'sha512', password: Buffer, salt: Buffer, rounds: number): Promise<string> {
  return shaCryptInThread(variant, password, salt, rounds);
}
