/**
 * `npm run bench:availability [-- --before DIR] [--repeat N]`
 *
 * Issue 16's attacks, measured, not asserted: the same attacks and measurements as
 * test/availability/availability.test.ts (test/helpers/availability.ts), each against a
 * fresh `mailauth serve` (bin/mailauth of a built tree) on a test database:
 *   SHA-crypt guess flood   64 clients, distinct wrong guesses, 50 mailboxes at 5,000 rounds
 *   bcrypt guess flood      450 distinct wrong guesses at once, bcrypt cost 10
 *   over the cost ceiling   4 clients guessing at a bcrypt-18 and a 1,000,000-round mailbox
 *   cheap-guess cache flush 6,000 distinct SSHA256 guesses against a 2,000-entry verify cache
 *   idle connections        400 idle keep-alive sockets against a daemon with 256 fds
 * For each: warm logins of other users (p50/p99 during the attack against a quiet run just
 * before it), /healthz, correct logins of not-yet-cached users right after the attack, and
 * the daemon's CPU one second later. With --before DIR (another checkout, built with
 * `npm run build` there), both trees side by side, alternating per attack so a busy machine
 * weighs on both alike; --repeat N runs every pair N times. The throttle is off (where the
 * tree has one): an attacker with many addresses.
 */
import { existsSync } from 'node:fs';
import { resolve } from 'node:path';
import { createTestDatabase, seedDomain, seedMailbox } from '../test/helpers/db.js';
import { ATTACKS, ROOT, seedAttackWorld, startDaemon } from '../test/helpers/availability.js';
import type { AttackReport, AttackWorld, Daemon } from '../test/helpers/availability.js';
import { fmt, median, table } from './lib/report.js';
import { Teardowns } from './lib/teardowns.js';

const argv = process.argv.slice(2);
const value = (name: string, d: string): string => {
  const i = argv.indexOf(`--${name}`);
  return i >= 0 && argv[i + 1] !== undefined ? (argv[i + 1] as string) : d;
};
const before = value('before', '');
const REPEAT = Number(value('repeat', '1'));
const log = (s: string): void => void process.stderr.write(`${s}\n`);

interface Case {
  name: string;
  config?: Record<string, unknown>;
  nofile?: number;
  run(d: Daemon, w: AttackWorld): Promise<AttackReport>;
}

const CASES: Case[] = [
  { name: 'SHA-crypt guess flood', run: (d, w) => ATTACKS.shaCryptFlood(d, w) },
  { name: 'bcrypt guess flood', run: (d, w) => ATTACKS.bcryptFlood(d, w) },
  { name: 'over the cost ceiling', run: (d, w) => ATTACKS.costCeiling(d, w) },
  { name: 'cheap-guess cache flush', config: { cache: { verify_entries: 2000 } }, run: (d, w) => ATTACKS.cacheFlush(d, w, 6000) },
  { name: 'idle connections', nofile: 256, run: (d, w) => ATTACKS.idleSockets(d, w, 400) },
];

async function main(): Promise<void> {
  const trees: Array<[string, string]> = [['after', ROOT]];
  if (before) {
    const dir = resolve(before);
    if (!existsSync(resolve(dir, 'dist/cli/main.js'))) throw new Error(`--before ${dir}: no dist/ there (run npm run build in it)`);
    trees.unshift(['before', dir]);
  }
  const td = new Teardowns();
  try {
    const tdb = await createTestDatabase(td);
    log('seeding mailboxes (bcrypt, SHA-crypt, SSHA256)');
    const world = await seedAttackWorld(tdb, { seedDomain, seedMailbox } as never, { fresh: 10 * trees.length * REPEAT });
    const reports = new Map<string, AttackReport[]>();
    for (let r = 0; r < REPEAT; r++) {
      for (const c of CASES) {
        for (const [label, root] of trees) {
          log(`[${label}] ${c.name} (run ${r + 1}/${REPEAT})`);
          const one = new Teardowns();
          try {
            const d = await startDaemon(one, tdb.url, { root, nofile: c.nofile, config: { throttle: { enabled: false }, ...c.config } });
            const report = await c.run(d, world);
            if (d.exited() !== null) report.during.warmNotOk.push(`daemon exited: ${d.exited()}`);
            const key = `${c.name}\u0000${label}`;
            reports.set(key, [...(reports.get(key) ?? []), report]);
          } finally {
            await one.run();
          }
        }
      }
    }
    const rows: string[][] = [];
    for (const c of CASES) {
      for (const [label] of trees) {
        const rs = reports.get(`${c.name}\u0000${label}`) ?? [];
        const m = (pick: (x: AttackReport) => number): number => median(rs.map(pick));
        const sum = (pick: (x: AttackReport) => number): number => rs.reduce((a, x) => a + pick(x), 0);
        rows.push([
          c.name,
          label,
          `${fmt(m((x) => x.quiet.warmP99), 1)} → ${fmt(m((x) => x.during.warmP99), 1)}`,
          `${fmt(m((x) => x.during.warmP99 / x.quiet.warmP99), 1)}×`,
          fmt(sum((x) => x.during.warmNotOk.length)),
          `${fmt(m((x) => x.during.healthWorst))} (${fmt(sum((x) => x.during.healthFailures))}/${fmt(sum((x) => x.during.healthCount))})`,
          `${fmt(sum((x) => x.after.freshCount - x.after.freshNotOk.length))}/${fmt(sum((x) => x.after.freshCount))}`,
          fmt(m((x) => x.after.freshWorstMs)),
          fmt(m((x) => x.after.cpuCores), 2),
          c.name.startsWith('cheap') ? fmt(m((x) => x.after.bcryptMisses)) : '',
          fmt(sum((x) => x.attack.ok)),
        ]);
      }
    }
    process.stdout.write(
      `\n${table(
        ['attack', 'tree', 'warm p99 ms quiet → during', 'ratio', 'warm not ok', '/healthz worst ms (failed/probes)', 'fresh logins ok after', 'fresh worst ms', 'CPU 1 s after (cores)', 'verify-cache misses of the dormant users', 'guesses ok'],
        rows,
      )}\n\nMedians of ${REPEAT} run(s) per tree; counts are sums. For the cache flush, "fresh" are the 20 dormant users (cached before the flood, bcrypt cost 10) and "fresh worst" is their whole pass.\n`,
    );
  } finally {
    await td.run();
  }
}

await main();
