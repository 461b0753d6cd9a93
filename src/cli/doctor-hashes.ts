/**
 * `mailauth doctor`: stored hashes whose work is above `auth.hash_limits`
 * (issue 16). The daemon refuses to verify them (src/auth/hash-limit.ts:
 * internal_failure, an error line naming the mailbox), so those mailboxes and
 * app passwords can never log in. Reads `mailbox` and `app_passwd` in bounded
 * batches (primary-key ranges), only each hash's parameters (the same reading
 * the daemon does, passwords/work.ts), and never prints a hash.
 */
import type { Config } from '../config/index.js';
import { appPasswordHashPage, isResourceKind, mailboxHashPage } from '../db/index.js';
import type { Queryable } from '../db/index.js';
import { HARD_WORK_CAPS, workExcesses } from '../passwords/index.js';
import type { WorkCaps, WorkExcess, WorkParameter } from '../passwords/index.js';
import type { Check } from './doctor-checks.js';

/** Rows per query: one index range each, so a big table costs many short queries, not one long one. */
export const HASH_SCAN_BATCH = 1000;
/** Findings listed in --json at most (the count in the title covers all). */
const MAX_ITEMS = 10_000;
/** Findings listed in the human output. */
const MAX_LINES = 20;

const CONFIG_KEY: Record<WorkParameter, string> = {
  bcryptCost: 'bcrypt_cost',
  shaCryptRounds: 'sha_crypt_rounds',
  pbkdf2Iterations: 'pbkdf2_iterations',
  argon2MemoryKib: 'argon2_memory_kib',
  argon2TimeCost: 'argon2_time_cost',
  argon2Parallelism: 'argon2_parallelism',
};

export interface OverLimit {
  /** The key under auth.hash_limits. */
  limit: string;
  /** "bcrypt cost", "argon2 memory"… */
  what: string;
  value: number;
  max: number;
  /** ' KiB' for argon2 memory, else ''. */
  unit: string;
  /** False when the value is above what any auth.hash_limits may allow: only a new password helps. */
  raisable: boolean;
}

export interface HashFinding {
  mailbox: string;
  /** The app password's id; absent for the mailbox's own password. */
  appPassword?: number;
  scheme: string;
  /** null: the hash is used at login now; else why not (it counts again once the reason goes). */
  unused: string | null;
  over: OverLimit[];
}

export interface HashScan {
  mailboxes: number;
  appPasswords: number;
  findings: HashFinding[];
  /** Findings beyond MAX_ITEMS: counted, not kept. */
  more: number;
  /** Findings whose hash is used at login now (kept or not). */
  inUse: number;
}

function overLimits(excess: WorkExcess[]): OverLimit[] {
  return excess.map((e) => ({ limit: CONFIG_KEY[e.parameter], what: e.label, value: e.value, max: e.cap, unit: e.unit, raisable: e.value <= HARD_WORK_CAPS[e.parameter] }));
}

function mailboxUnused(r: { authsource: string; active: number; kind: string }): string | null {
  if (isResourceKind(r.kind)) return `resource mailbox (kind ${r.kind})`;
  if (r.authsource !== 'mailcow') return `authsource ${r.authsource}: used again if the mailbox is switched back to mailcow`;
  if (r.active === 2) return 'mailbox active = 2 (receives mail, no login)';
  if (r.active !== 1) return 'mailbox inactive';
  return null;
}

function appPasswordUnused(r: { active: number; mailboxActive: number | null }): string | null {
  if (r.active !== 1) return 'app password inactive';
  if (r.mailboxActive === null) return 'its mailbox does not exist';
  if (r.mailboxActive !== 1) return 'its mailbox cannot log in (active ≠ 1)';
  return null;
}

/** Every stored hash of `mailbox` and `app_passwd` with work above `caps`, read `batch` rows at a time. */
export async function scanHashLimits(db: Queryable, caps: Readonly<WorkCaps>, batch = HASH_SCAN_BATCH): Promise<HashScan> {
  const scan: HashScan = { mailboxes: 0, appPasswords: 0, findings: [], more: 0, inUse: 0 };
  const found = (f: HashFinding): void => {
    if (f.unused === null) scan.inUse += 1;
    if (scan.findings.length < MAX_ITEMS) scan.findings.push(f);
    else scan.more += 1;
  };
  for (let after: string | null = null; ; ) {
    const rows = await mailboxHashPage(db, after, batch);
    for (const r of rows) {
      scan.mailboxes += 1;
      const excess = workExcesses(r.password, caps);
      if (excess.length > 0) found({ mailbox: r.username, scheme: (excess[0] as WorkExcess).scheme, unused: mailboxUnused(r), over: overLimits(excess) });
    }
    if (rows.length < batch) break;
    after = (rows.at(-1) as { username: string }).username;
  }
  for (let after = 0; ; ) {
    const rows = await appPasswordHashPage(db, after, batch);
    for (const r of rows) {
      scan.appPasswords += 1;
      const excess = workExcesses(r.password, caps);
      if (excess.length > 0) found({ mailbox: r.mailbox, appPassword: r.id, scheme: (excess[0] as WorkExcess).scheme, unused: appPasswordUnused(r), over: overLimits(excess) });
    }
    if (rows.length < batch) break;
    after = (rows.at(-1) as { id: number }).id;
  }
  return scan;
}

function line(f: HashFinding): string {
  const who = f.appPassword === undefined ? f.mailbox : `${f.mailbox} app password ${f.appPassword}`;
  const over = f.over.map((o) => `${o.what} ${o.value}${o.unit} > auth.hash_limits.${o.limit} ${o.max}${o.unit}${o.raisable ? '' : ' (above what any limit allows)'}`).join(', ');
  return `${who}: {${f.scheme}} ${over}${f.unused === null ? '' : ` — not used at login now: ${f.unused}`}`;
}

function fix(scan: HashScan): string {
  const parts: string[] = [];
  if (scan.findings.some((f) => f.appPassword === undefined)) parts.push('set a new password: mailauth mailbox passwd USER');
  if (scan.findings.some((f) => f.appPassword !== undefined)) parts.push('replace an app password: mailauth app-password delete USER ID, then mailauth app-password add USER');
  // The highest value found per limit that a limit may still allow.
  const raise = new Map<string, { value: number; unit: string }>();
  for (const f of scan.findings) for (const o of f.over) if (o.raisable && o.value > (raise.get(o.limit)?.value ?? 0)) raise.set(o.limit, { value: o.value, unit: o.unit });
  if (raise.size > 0) {
    const keys = [...raise].map(([k, v]) => `auth.hash_limits.${k}: ${v.value}`).join(', ');
    parts.push(`or, knowingly, raise ${keys} (each such login then holds a hash slot for that much work: docs/security.md "Hash work")`);
  }
  return parts.join('; ');
}

/** The `hash-limits` line of doctor: fail when a hash used at login is above a limit, warn when only unused ones are. */
export async function hashLimitChecks(config: Config, db: Queryable, opts: { batch?: number } = {}): Promise<Check[]> {
  let scan: HashScan;
  try {
    scan = await scanHashLimits(db, config.auth.hashLimits, opts.batch);
  } catch (err) {
    return [{ id: 'hash-limits', status: 'fail', title: 'stored hashes: cannot read the mailbox and app_passwd tables', detail: err instanceof Error ? err.message : String(err), fix: 'check the database account (SELECT on mailbox and app_passwd)' }];
  }
  const read = `${scan.mailboxes} mailbox and ${scan.appPasswords} app-password hash(es) read`;
  const total = scan.findings.length + scan.more;
  if (total === 0) return [{ id: 'hash-limits', status: 'pass', title: `stored hashes: none above auth.hash_limits (${read})` }];
  const inUse = scan.inUse;
  const shown = scan.findings.slice(0, MAX_LINES).map(line);
  const rest = total - shown.length;
  return [
    {
      id: 'hash-limits',
      status: inUse > 0 ? 'fail' : 'warn',
      title:
        inUse > 0
          ? `stored hashes: ${total} above auth.hash_limits; ${inUse} of them in use, and those logins always fail (internal_failure)`
          : `stored hashes: ${total} above auth.hash_limits, none used at login now`,
      detail: `${shown.join('\n    ')}${rest > 0 ? `\n    … and ${rest} more (mailauth --json doctor lists ${scan.more > 0 ? `the first ${scan.findings.length}` : 'them all'})` : ''}\n    (${read})`,
      fix: fix(scan),
      items: scan.findings,
    },
  ];
}
