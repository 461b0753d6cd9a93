/**
 * `mailauth sync`: full sync and import from Keycloak or LDAP. Plan purely
 * (plan.ts), apply page by page (run.ts), convert Keycloak users (users.ts).
 */
export { planSync, planDeprovision, checkDeprovisionSafety, chooseTemplate, userAddress } from './plan.js';
export type {
  SyncUser,
  PlanMailbox,
  SyncSettings,
  PlanOptions,
  SyncAction,
  SkipReason,
  StepReason,
  SyncStep,
  SeenUsers,
  SafetyInput,
  SafetyVerdict,
} from './plan.js';
export { runSync, exitCodeOf, SYNC_EXIT, MAX_ERRORS } from './run.js';
export type { SyncRunOptions, SyncDeps, SyncReport, SyncStatus, SyncCounts, SyncErrorEntry, SyncProgress, StepEvent, StepOutcome } from './run.js';
export { toSyncUser, displayName, keycloakUserPages, ldapUserPages, ldapSyncUser, TEMPLATE_ATTRIBUTE } from './users.js';
export type { ListingResult, UserPages } from './users.js';
export { syncPreconditions, SYNC_LOCK_NAME } from './preconditions.js';
export type { SyncPrecondition } from './preconditions.js';
