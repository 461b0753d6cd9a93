/**
 * Brute-force policy (issue 17): the throttle, the seam the server puts in front
 * of the decision, and Dovecot's auth-policy protocol. Verifies no password and
 * reads no mailbox.
 */
export { createThrottle, normalizeUser, THROTTLE_SCOPES } from './throttle.js';
export type { Throttle, ThrottleOptions, ThrottleScope, ThrottleStats, ThrottleEntryView, Verdict } from './throttle.js';
export { throttled, refusalReason, sessionMemory } from './guard.js';
export type { SessionMemory, ThrottledOptions } from './guard.js';
export { parsePolicyRequest, answerPolicy, POLICY_REFUSAL_MESSAGE } from './dovecot-policy.js';
export type { PolicyRequest, PolicyAnswer } from './dovecot-policy.js';
export { clientKey, networkMatcher } from './address.js';
export type { NetworkMatcher } from './address.js';
