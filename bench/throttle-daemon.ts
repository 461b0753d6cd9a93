/**
 * `npm run bench:throttle [-- --seconds 8] [--rounds 3] [--connections 32] [--users 200]`
 *
 * Throttling's cost per login on the warm path, in the full daemon (issue 17):
 * two real daemons (bin/mailauth serve, each its own process, same database and
 * users) — one with the default `throttle`, one with `throttle.enabled: false` —
 * driven by autocannon with the same warm cached logins (SSHA256 mailboxes from
 * 250 addresses outside the trusted networks, every answer `ok`), in interleaved
 * runs A B B A A B B A so a drift of the shared machine hits both alike. Prints a table
 * of medians: throughput, latency, daemon CPU per login, and the ratio on/off.
 * bench/throttle.ts measures the throttle wrapper alone, in-process; the figures
 * of a run are in docs/security.md "Cost".
 *
 * A benchmark, not a test: it asserts only that the runs measured what they claim
 * (every answer ok, the throttle live in A and absent in B). About 75 s with the
 * defaults (4 rounds × 2 daemons × 6 s, warm-up, start-up), plus the build.
 */
import { availableParallelism, cpus } from 'node:os';
import { createFixture } from './lib/fixtures.js';
import { runLoad, warmUp } from './lib/load.js';
import type { LoadResult } from './lib/load.js';
import { scrape, startDaemon } from './lib/processes.js';

const argv = process.argv.slice(2);
const value = (name: string, d: number): number => {
  const i = argv.indexOf(`--${name}`);
  return i >= 0 && argv[i + 1] !== undefined ? Number(argv[i + 1]) : d;
};
const seconds = value('seconds', 6);
const rounds = value('rounds', 4);
const connections = value('connections', 32);
const users = value('users', 200);
const log = (s: string) => process.stderr.write(`${s}\n`);

const median = (xs: number[]): number => {
  const s = [...xs].sort((a, b) => a - b);
  const m = s.length >> 1;
  return s.length % 2 ? (s[m] as number) : ((s[m - 1] as number) + (s[m] as number)) / 2;
};

interface Run extends LoadResult {
  cpuUsPerLogin: number;
}

const fixture = await createFixture({ users, log });
const bodies = fixture.ssha.map((u, i) => JSON.stringify({ user: u.user, password: u.password, service: 'imap', remote_ip: `198.51.100.${(i % 250) + 1}` }));
const variants = [
  { name: 'throttle on (defaults)', config: {} },
  { name: 'throttle off (enabled: false)', config: { throttle: { enabled: false } } },
] as const;
const daemons: Awaited<ReturnType<typeof startDaemon>>[] = [];
try {
  for (const v of variants) daemons.push(await startDaemon({ databaseUrl: fixture.url, config: { log: { level: 'warn', format: 'json' }, ...v.config } }));
  for (const d of daemons) {
    await warmUp(d.url, '/v1/passdb', bodies, 8, { status: 200, result: 'ok' });
    await runLoad({ url: d.url, path: '/v1/passdb', bodies, connections, seconds: 2, status: 200 });
  }
  const runs: Run[][] = variants.map(() => []);
  for (let r = 0; r < rounds; r++) {
    // A B, then B A: neither variant always runs first in a round (ABBA cancels a linear drift).
    for (const k of r % 2 === 0 ? [0, 1] : [1, 0]) {
      const d = daemons[k] as (typeof daemons)[number];
      const cpu0 = d.cpuSeconds();
      const res = await runLoad({ url: d.url, path: '/v1/passdb', bodies, connections, seconds, status: 200 });
      const cpuUsPerLogin = ((d.cpuSeconds() - cpu0) * 1e6) / res.requests;
      if (res.unexpected > 0 || res.errors > 0) throw new Error(`${variants[k]?.name}: ${res.unexpected} unexpected answers, ${res.errors} errors`);
      runs[k]?.push({ ...res, cpuUsPerLogin });
      log(`round ${r + 1} ${variants[k]?.name}: ${Math.round(res.rps)} req/s, p50 ${res.p50.toFixed(2)} ms, ${cpuUsPerLogin.toFixed(1)} µs CPU/login`);
    }
  }
  // The runs measured what they claim: A kept throttle state for these logins, B none.
  const familiar = await Promise.all(daemons.map(async (d) => (await scrape(d.url)).get('mailauth_throttle_entries{table="familiar"}') ?? 0));
  if (!((familiar[0] ?? 0) > 0) || (familiar[1] ?? 0) !== 0) throw new Error(`throttle state not as expected: on ${familiar[0]}, off ${familiar[1]}`);

  const row = (name: string, rs: Run[]) => {
    const m = { rps: median(rs.map((x) => x.rps)), p50: median(rs.map((x) => x.p50)), p99: median(rs.map((x) => x.p99)), cpu: median(rs.map((x) => x.cpuUsPerLogin)) };
    return { name, ...m, text: `| ${name} | ${Math.round(m.rps)} | ${m.p50.toFixed(2)} | ${m.p99.toFixed(2)} | ${m.cpu.toFixed(1)} |` };
  };
  const [on, off] = [row(variants[0].name, runs[0] ?? []), row(variants[1].name, runs[1] ?? [])];
  const lines = [
    `machine: ${availableParallelism()} cores (${cpus()[0]?.model.trim() ?? '?'}), Node ${process.version}; load generator in the same machine`,
    `warm cached logins (SSHA256, ${users} mailboxes, 250 addresses), autocannon keep-alive, ${connections} in flight, ${rounds} interleaved runs (ABBA) of ${seconds} s per daemon (medians)`,
    '',
    '| daemon | req/s | p50 ms | p99 ms | daemon CPU µs / login |',
    '| --- | ---: | ---: | ---: | ---: |',
    on.text,
    off.text,
    `| ratio on / off | ${(on.rps / off.rps).toFixed(3)} | ${(on.p50 / off.p50).toFixed(3)} | ${(on.p99 / off.p99).toFixed(3)} | ${(on.cpu / off.cpu).toFixed(3)} |`,
    '',
    `throttling costs ${(on.cpu - off.cpu).toFixed(1)} µs of daemon CPU per warm login (${(((on.cpu - off.cpu) / off.cpu) * 100).toFixed(1)} % of it); throttle entries (familiar) after the runs: on ${familiar[0]}, off ${familiar[1]}`,
  ];
  process.stdout.write(`${lines.join('\n')}\n`);
} finally {
  for (const d of daemons) await d.stop();
  await fixture.drop();
}
