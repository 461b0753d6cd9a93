/**
 * Part 2: through private Dovecot instances (auth cache off), the same users and
 * hashes: mailauth behind lua/mailauth.lua versus Dovecot's own passdb sql.
 * Auth rate over the auth-client protocol (32 in flight), plus full IMAP LOGINs.
 */
import { startBenchDovecot } from './dovecot.js';
import type { BenchDovecot } from './dovecot.js';
import { authLoad, authOnce, imapLoad } from './dovecot-load.js';
import type { RateResult } from './dovecot-load.js';
import type { Fixture } from './fixtures.js';
import { startBare, startDaemon } from './processes.js';
import type { Proc } from './processes.js';
import { fmt, median, table } from './report.js';

export interface DovecotOptions {
  seconds: number;
  imapSeconds: number;
  repeat: number;
  workers: number;
  inFlight: number;
  log: (s: string) => void;
  env?: Record<string, string>;
  /** How the Lua script reaches mailauth: loopback TCP (default) or a Unix socket. */
  transport?: 'tcp' | 'unix';
}

type Kind = 'ssha' | 'blf' | 'imap';

export async function throughDovecot(f: Fixture, o: DovecotOptions): Promise<{ text: string; ratios: Record<Kind, number> }> {
  const socket = o.transport === 'unix' ? `/tmp/mab-${process.pid}.sock` : null;
  const daemon = await startDaemon({
    databaseUrl: f.url,
    ...(socket ? { config: { listen: { socket, socket_mode: '0666' } } } : {}),
    ...(o.env ? { env: o.env } : {}),
  });
  const started: BenchDovecot[] = [];
  let bare: Proc | null = null;
  try {
    const lua = await startBenchDovecot({ kind: 'lua', url: socket ? `unix:${socket}` : daemon.url }, { workers: o.workers });
    started.push(lua);
    // The transport's ceiling: the same Lua script in front of a server that answers "ok" at once.
    bare = await startBare();
    const ceiling = await startBenchDovecot({ kind: 'lua', url: bare.url }, { workers: o.workers });
    started.push(ceiling);
    const sql = await startBenchDovecot(
      { kind: 'sql', host: f.readonly.host, port: f.readonly.port, database: f.name, user: f.readonly.user, password: f.readonly.password },
      { workers: o.workers },
    );
    started.push(sql);
    const sides = { mailauth: lua, native: sql, ceiling } as const;

    for (const [name, dc] of Object.entries({ mailauth: lua, native: sql })) {
      const bad = await authOnce(dc.authSocket, [...f.ssha.slice(0, 20), ...f.blf.slice(0, 4)], 8);
      if (bad > 0) throw new Error(`${name}: ${bad} of 24 sanity logins failed\n${dc.log().slice(-3000)}`);
    }
    o.log('  warming mailauth (every user once; the BLF-CRYPT pass costs one bcrypt per user)…');
    // Few in flight: a cold bcrypt queue deeper than auth.deadline would answer internal_failure.
    const failedWarm = (await authOnce(lua.authSocket, f.ssha, 8)) + (await authOnce(lua.authSocket, f.blf, 8));
    if (failedWarm > 0) o.log(`  ! ${failedWarm} warm-up logins failed (machine overloaded?); they stay cold`);

    // Dovecot starts auth workers on demand: without this the first measured run of each side
    // pays for spawning (and, for Lua, initialising) the workers beyond the warm-up's 8.
    for (const dc of [lua, sql, ceiling]) await authLoad(dc.authSocket, f.ssha, { inFlight: o.inFlight, connections: 4, seconds: 2 });

    const results: Record<string, RateResult[]> = {};
    const add = (k: string, r: RateResult) => (results[k] ??= []).push(r);
    for (let rep = 0; rep < o.repeat; rep++) {
      // Alternate the order so neither side always runs on a warmer (or hotter) machine.
      const order = rep % 2 === 0 ? (['mailauth', 'native', 'ceiling'] as const) : (['native', 'mailauth', 'ceiling'] as const);
      for (const side of order) {
        const dc = sides[side];
        if (side === 'ceiling') {
          const x = await authLoad(dc.authSocket, f.ssha, { inFlight: o.inFlight, connections: 4, seconds: o.seconds });
          add('ceiling|ssha', x);
          o.log(`  [${rep + 1}/${o.repeat}] Lua → fixed-answer HTTP server: ${fmt(x.rps)}/s`);
          continue;
        }
        const run = async (kind: Kind, r: Promise<RateResult>) => {
          const x = await r;
          add(`${side}|${kind}`, x);
          o.log(`  [${rep + 1}/${o.repeat}] ${side} ${kind}: ${fmt(x.rps)}/s p50 ${fmt(x.p50, 1)} p99 ${fmt(x.p99, 1)} ms${x.failed ? `, ${x.failed} FAILED` : ''}`);
        };
        await run('ssha', authLoad(dc.authSocket, f.ssha, { inFlight: o.inFlight, connections: 4, seconds: o.seconds }));
        await run('blf', authLoad(dc.authSocket, f.blf, { inFlight: o.inFlight, connections: 4, seconds: o.seconds }));
        await run('imap', imapLoad(dc.imapPort, f.ssha, { inFlight: o.inFlight, seconds: o.imapSeconds }));
      }
    }

    const med = (side: string, kind: Kind, pick: (r: RateResult) => number) => median((results[`${side}|${kind}`] ?? []).map(pick));
    const ratios = {} as Record<Kind, number>;
    const rows: string[][] = [];
    const labels: Record<Kind, string> = {
      ssha: 'SSHA256, auth-client PLAIN',
      blf: 'BLF-CRYPT cost 10, auth-client PLAIN',
      imap: 'SSHA256, full IMAP LOGIN',
    };
    for (const kind of ['ssha', 'blf', 'imap'] as const) {
      const a = med('mailauth', kind, (r) => r.rps);
      const b = med('native', kind, (r) => r.rps);
      ratios[kind] = a / b;
      rows.push([
        labels[kind],
        fmt(a),
        `${fmt(med('mailauth', kind, (r) => r.p50), 1)} / ${fmt(med('mailauth', kind, (r) => r.p99), 1)}`,
        fmt(b),
        `${fmt(med('native', kind, (r) => r.p50), 1)} / ${fmt(med('native', kind, (r) => r.p99), 1)}`,
        `${fmt(a / b, 2)}×`,
      ]);
    }
    const c = med('ceiling', 'ssha', (r) => r.rps);
    rows.push([
      'ceiling: same Lua → a fixed "ok" (no database)',
      fmt(c),
      `${fmt(med('ceiling', 'ssha', (r) => r.p50), 1)} / ${fmt(med('ceiling', 'ssha', (r) => r.p99), 1)}`,
      '',
      '',
      `${fmt(c / med('native', 'ssha', (r) => r.rps), 2)}×`,
    ]);
    const text = table([`through Dovecot (${f.ssha.length.toLocaleString('en-US')} users per kind, ${o.inFlight} in flight)`, 'mailauth /s', 'p50 / p99 ms', 'native SQL /s', 'p50 / p99 ms', 'mailauth ÷ native'], rows);
    return { text, ratios };
  } finally {
    for (const dc of started.reverse()) await dc.stop();
    await bare?.stop();
    await daemon.stop();
  }
}
