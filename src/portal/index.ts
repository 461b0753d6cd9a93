/** The self-service portal (issue 19): its own listener, IdP or password sign-in, app passwords, recent logins. */
export { createPortal, clientAddress } from './portal.js';
export type { Portal, PortalOptions } from './portal.js';
export { createActions, policyProblems } from './actions.js';
export type { Actions, ActionsOptions, ChangeHook, ChangeKind, MailboxView, AppPasswordView, LoginView } from './actions.js';
export { createSignInClient, issuerFor } from './signin.js';
export type { SignInClient, SignInIdentity, SignInOptions } from './signin.js';
export { createSessionStore, tokensEqual, PENDING_TTL_MS } from './session.js';
export type { SessionStore, PortalSession } from './session.js';
export { createSignInLimiter } from './limiter.js';
export type { SignInLimiter } from './limiter.js';
export { startPortal } from './start.js';
export type { StartPortalOptions, RunningPortal } from './start.js';
