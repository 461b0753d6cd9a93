/**
 * Talking to Dovecot: reading its running configuration (`doveconf -n`) for
 * `mailauth doctor`; doveadm (cache flush, kick) joins here as its own module.
 * Nothing in this folder decides a login.
 */
export { dovecotAuthSettings, findBlocks, isHidden, parseDoveconf, parseInterval, parseSize, runDoveconf } from './doveconf.js';
export type { Doveconf, DoveconfBlock, DovecotAuthSettings, LuaDb, RunDoveconfOptions, Sourced } from './doveconf.js';
