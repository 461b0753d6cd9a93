/**
 * Password hashes in Dovecot's `{SCHEME}` notation, as stored by mailcow.
 * Pure: no I/O, no logging, no config. Other layers import only from here.
 */
export type { VerifyOutcome, VerifyResult } from './result.js';
export type { ParsedStored } from './parse.js';
export type { VerifyOptions } from './verify.js';
export type { HashOptions, HashScheme } from './hash.js';
export type { SchemeInfo } from './policy.js';
export type { HashWork, WorkCaps, WorkExcess, WorkParameter } from './work.js';
export { verify, schemeOf } from './verify.js';
export { parseStored } from './parse.js';
export { hash, newPasswordProblem, BCRYPT_MAX_PASSWORD_BYTES } from './hash.js';
export { listSchemes, isSchemeAllowed } from './policy.js';
export { readHashWork, workExcesses, excessesOf, workOverCaps, HARD_WORK_CAPS, IDP_WORK_CAPS } from './work.js';
export { createHashPool } from './hash-pool.js';
export type { HashPool, HashPoolStats } from './hash-pool.js';
export type { ShaCryptRunner } from './unix-crypt.js';
