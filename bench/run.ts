/**
 * `npm run bench [-- --quick] [--only daemon,dovecot,memory] [--repeat N]`
 *
 * A benchmark, not a test: it prints tables, asserts nothing. See docs/performance.md.
 *   1. the daemon alone (autocannon, keep-alive) next to a bare node:http server;
 *   2. through private Dovecot instances: mailauth behind lua/mailauth.lua versus
 *      Dovecot's own SQL passdb on the same users and hashes;
 *   3. memory with 100,000 cached entries.
 */
import { availableParallelism, cpus } from 'node:os';
import { execFileSync } from 'node:child_process';
import { createFixture } from './lib/fixtures.js';
import { daemonAlone } from './lib/daemon-alone.js';
import { dovecotMissing } from '../test/helpers/dovecot.js';
import { memory } from './lib/memory.js';
import { design } from './lib/design.js';
import { throughDovecot } from './lib/through-dovecot.js';

const argv = process.argv.slice(2);
const flag = (name: string) => argv.includes(`--${name}`);
const value = (name: string, d: string): string => {
  const i = argv.indexOf(`--${name}`);
  return i >= 0 && argv[i + 1] !== undefined ? (argv[i + 1] as string) : d;
};
const quick = flag('quick');
const only = new Set(value('only', 'daemon,dovecot,memory,design').split(','));
const repeat = Number(value('repeat', quick ? '1' : '3'));
const seconds = Number(value('seconds', quick ? '5' : '30'));
const users = Number(value('users', quick ? '200' : '1000'));
const log = (s: string) => process.stderr.write(`${s}\n`);

function version(cmd: string, args: string[]): string {
  try {
    return execFileSync(cmd, args, { encoding: 'utf8' }).trim().split('\n')[0] ?? '?';
  } catch {
    return 'not installed';
  }
}

const machine = [
  `machine: ${availableParallelism()} cores (${cpus()[0]?.model.trim() ?? '?'}), Node ${process.version}`,
  `Dovecot ${version('dovecot', ['--version'])}, ${version('mariadb', ['--version'])}`,
  `UV_THREADPOOL_SIZE of the daemon: ${process.env.UV_THREADPOOL_SIZE ?? 'launcher default'}`,
  `${quick ? 'QUICK run' : 'full run'}: ${seconds} s per measurement after warm-up, ${repeat} run(s) each (medians), ${users} users per kind`,
].join('\n');
log(machine);

const fixture = await createFixture({ users, log });
try {
  const out: string[] = [machine, ''];
  if (only.has('daemon')) {
    log('\n(1) daemon alone');
    const scenarios = value('scenarios', '').split(',').filter(Boolean);
    const endpoints = value('endpoints', 'passdb,mailcow').split(',') as Array<'passdb' | 'mailcow'>;
    const r = await daemonAlone(fixture, { seconds, connections: 32, repeat, endpoints, log, only: scenarios });
    out.push('(1) daemon alone: autocannon, keep-alive, 32 in flight', r.text, '');
  }
  if (only.has('dovecot')) {
    const missing = dovecotMissing();
    if (missing) {
      log(`\n(2) SKIPPED: ${missing}`);
      out.push(`(2) through Dovecot: skipped (${missing})`, '');
    } else {
      log('\n(2) through Dovecot');
      const workers = Number(value('workers', '30'));
      const transport = value('transport', 'tcp') === 'unix' ? 'unix' : 'tcp';
      const r = await throughDovecot(fixture, { seconds, imapSeconds: quick ? 5 : 20, repeat, workers, inFlight: 32, log, transport });
      out.push(
        `(2) through Dovecot ${version('dovecot', ['--version'])}, auth cache off, auth_worker_max_count = ${workers}, Lua → mailauth over ${transport === 'unix' ? 'a Unix socket' : 'loopback TCP'} (builtin keep-alive client)`,
        r.text,
        '',
      );
    }
  }
  if (only.has('memory')) {
    log('\n(3) memory');
    out.push('(3) memory', await memory(fixture, { users: Number(value('memory-users', '100000')), log }), '');
  }
  if (only.has('design')) {
    log('\n(4) account cache design');
    out.push('(4) account loading: the decision alone (no HTTP), in the benchmark process', await design(fixture, { seconds: quick ? 3 : 10, repeat, log }), '');
  }
  process.stdout.write(`${out.join('\n')}\n`);
} finally {
  await fixture.drop();
}
