/**
 * The credential caches (DESIGN.md "The caches"): bounded by entries and
 * bytes, with plain counters that /metrics reads. No plaintext password is
 * ever stored: the verify cache keeps keyed digests, the others keep rows.
 */
export { createVerifyCache, VERIFY_ENTRY_BYTES } from './verify-cache.js';
export type { VerifyCache, VerifyCacheOptions, Verifier } from './verify-cache.js';
export { createAccountCache } from './account-cache.js';
export type { AccountCache, AccountCacheOptions, Loader, Revalidation } from './account-cache.js';
export { createIdpCache } from './idp-cache.js';
export type { IdpCache, IdpCacheOptions, IdpHit } from './idp-cache.js';
export { createSingleFlight } from './single-flight.js';
export type { SingleFlight } from './single-flight.js';
export { splitBudget } from './budget.js';
export type { CacheBudget } from './budget.js';
export { estimateBytes } from './size.js';
export { systemClock } from './stats.js';
export type { CacheStats, Clock } from './stats.js';
export { createBatcher } from './batcher.js';
export type { Batcher, BatcherOptions } from './batcher.js';
