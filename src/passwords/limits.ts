/**
 * Work caps for values read from a database row. A hostile or corrupt row must not
 * pin a CPU: anything above these is reported as 'malformed' before any hashing,
 * and hash() refuses to write what verify() would refuse to read.
 *
 * Each cap sits well above what the tools that write these hashes use by default
 * (glibc/Dovecot SHA-crypt 5000 rounds, Dovecot PBKDF2 5000, FreeIPA PBKDF2-SHA512
 * 10k–100k, PHP bcrypt cost 10, Dovecot bcrypt cost 5, Dovecot argon2 up to 1 GiB).
 */

/** SHA-crypt runs in JavaScript on our own thread, so this is the tightest cap. */
export const MAX_SHA_CRYPT_ROUNDS = 1_000_000;

/** PBKDF2 runs on the libuv pool; 389-ds refuses to configure more than 10 million. */
export const MAX_PBKDF2_ITERATIONS = 10_000_000;

/** bcrypt cost is exponential: 18 is ~256× PHP's default 10 (tens of seconds). */
export const MAX_BCRYPT_COST = 18;
export const MIN_BCRYPT_COST = 4;

/** Argon2 memory in KiB: 1 GiB is libsodium's "sensitive" preset, the largest Dovecot writes. */
export const MAX_ARGON2_MEMORY_KIB = 1_048_576;
export const MAX_ARGON2_TIME_COST = 32;
export const MAX_ARGON2_PARALLELISM = 16;

/**
 * libxcrypt refuses passphrases longer than this (CRYPT_MAX_PASSPHRASE_SIZE), so no
 * crypt(3) hash can have been made from one; the JavaScript crypt implementations
 * also cost O(length) per round, so the limit doubles as a work cap.
 */
export const MAX_CRYPT_PASSWORD_BYTES = 512;
