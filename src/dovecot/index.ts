/**
 * Talking to Dovecot: reading its running configuration (`doveconf -n`) for
 * `mailauth doctor`; doveadm (cache flush, kick) for changes mailauth makes (doveadm.ts).
 * Nothing in this folder decides a login.
 */
export { checksPasswords, dovecotAuthSettings, findBlocks, isHidden, parseDoveconf, parseInterval, parseSize, runDoveconf } from './doveconf.js';
export type { Doveconf, DoveconfBlock, DovecotAuthSettings, LuaDb, RunDoveconfOptions, Sourced } from './doveconf.js';
// Issue 17: telling Dovecot about changes mailauth makes (auth cache flush, kick).
export { createDovecotNotifier, runDoveadm, doveadmArgv, systemExec, httpApiKind, KICKING_CHANGES, HTTP_API_KIND_TTL_MS } from './doveadm.js';
export type { DovecotChange, DovecotNotifier, DovecotNotifierOptions, DoveadmAction, DoveadmOutcome, HttpApiKind, NotifyReport, PendingNotification, PendingStore, ExecFn } from './doveadm.js';
