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

/**
 * Tighter caps for hashes an identity provider hands us (Keycloak's mailcow_password
 * attribute). Anyone who may edit user attributes there — a realm admin, or a stolen
 * account with that right — can set the value, and each login then does whatever work
 * it asks for: under the caps above, seconds of CPU or a GiB of memory per attempt.
 * These still leave several times the work of every common writer: PHP and
 * `mailauth pw` bcrypt cost 10 (Dovecot 5, hardened setups 12), argon2 as libsodium's
 * "interactive"/"moderate" presets (64–256 MiB, t ≤ 4, p = 1; at these caps one argon2
 * login costs an estimated 0.8 s here (2.1 s measured at t 10, p 8), bcrypt 13 0.6 s), glibc/Dovecot
 * SHA-crypt 5000 rounds, Dovecot PBKDF2 5000 and FreeIPA PBKDF2-SHA512 10k–100k.
 */
export const IDP_MAX_BCRYPT_COST = 13;
export const IDP_MAX_ARGON2_MEMORY_KIB = 262_144;
export const IDP_MAX_ARGON2_TIME_COST = 4;
export const IDP_MAX_ARGON2_PARALLELISM = 4;
/** Applies to {PBKDF2} and {PBKDF2-SHA512} alike. */
export const IDP_MAX_PBKDF2_ITERATIONS = 1_000_000;
/** SHA-crypt runs in JavaScript on the event loop (in slices), so it gets the tightest cap. */
export const IDP_MAX_SHA_CRYPT_ROUNDS = 100_000;
