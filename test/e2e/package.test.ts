/**
 * The release path: `npm pack` (prepack builds dist/), then `npm install -g` of
 * the tarball into a temporary prefix, then the installed `mailauth` command:
 * --version, pw -l, lua-path / paths (the Lua script, units and example config
 * are in the package), and doctor against a test database.
 *
 * The pack runs in a copy of the package files (node_modules symlinked), so the
 * checkout's own dist/ is never cleaned or rebuilt under other running tests.
 * Dependencies come from npm's cache (--prefer-offline).
 */
import { execFile } from 'node:child_process';
import { chmodSync, cpSync, existsSync, mkdtempSync, readFileSync, readdirSync, rmSync, symlinkSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import t from 'tap';
import YAML from 'yaml';
import { createTestDatabase } from '../helpers/db.js';
import { freePort } from '../helpers/free-port.js';

const ROOT = resolve(dirname(fileURLToPath(import.meta.url)), '../..');
const pkg = JSON.parse(readFileSync(join(ROOT, 'package.json'), 'utf8')) as { name: string; version: string; files: string[] };

interface Run {
  code: number;
  stdout: string;
  stderr: string;
}

function run(cmd: string, args: string[], opts: { cwd?: string; env?: NodeJS.ProcessEnv; timeoutMs?: number } = {}): Promise<Run> {
  return new Promise((resolveRun) => {
    execFile(cmd, args, { cwd: opts.cwd, env: opts.env ?? process.env, timeout: opts.timeoutMs ?? 120_000, maxBuffer: 16 << 20 }, (err, stdout, stderr) => {
      const code = err ? (typeof (err as { code?: unknown }).code === 'number' ? ((err as { code: number }).code) : 1) : 0;
      resolveRun({ code, stdout, stderr });
    });
  });
}

t.test('npm pack → npm install -g → a working mailauth command', async (t) => {
  const work = mkdtempSync(join(tmpdir(), 'mailauth-pkg-'));
  // Like /usr/lib/node_modules: other users (Dovecot's auth process) may read the installed Lua script.
  chmodSync(work, 0o755);
  t.teardown(() => rmSync(work, { recursive: true, force: true }));

  // A copy of what npm pack reads, plus what prepack's build needs.
  const src = join(work, 'src-copy');
  for (const entry of [...pkg.files.filter((f) => !f.startsWith('!') && f !== 'dist/'), 'package.json', 'tsconfig.json', 'tsconfig.build.json', 'src']) {
    const from = join(ROOT, entry);
    if (existsSync(from)) cpSync(from, join(src, entry), { recursive: true });
  }
  symlinkSync(join(ROOT, 'node_modules'), join(src, 'node_modules'), 'dir');
  // npm must not pick up the checkout's .npmrc or a user prefix for the install below.
  const env = { ...process.env, NODE_OPTIONS: '', npm_config_prefix: undefined, npm_config_global: undefined, npm_config_loglevel: 'error', npm_config_fund: 'false', npm_config_audit: 'false', npm_config_update_notifier: 'false' } as NodeJS.ProcessEnv;
  for (const k of Object.keys(env)) if (env[k] === undefined) delete env[k];

  const packed = await run('npm', ['pack', '--pack-destination', work, '--json'], { cwd: src, env });
  t.equal(packed.code, 0, 'npm pack succeeds (prepack builds dist/)');
  if (packed.code !== 0) {
    t.comment(packed.stderr.slice(-4000));
    return;
  }
  const info = JSON.parse(packed.stdout) as { filename: string; files: { path: string }[] }[];
  const files = (info[0]?.files ?? []).map((f) => f.path);
  for (const want of ['bin/mailauth', 'dist/cli/main.js', 'dist/cli/doctor.js', 'lua/mailauth.lua', 'systemd/mailauth.service', 'systemd/mailauth-sync.service', 'systemd/mailauth-sync.timer', 'config.example.yaml', 'package.json', 'README.md']) {
    t.ok(files.includes(want), `tarball contains ${want}`);
  }
  t.notOk(files.some((f) => f.startsWith('src/') || f.startsWith('test/') || f.endsWith('.map')), 'tarball has no sources, tests or source maps');
  const tarball = join(work, info[0]?.filename ?? `${pkg.name}-${pkg.version}.tgz`);

  const prefix = join(work, 'prefix');
  const installed = await run('npm', ['install', '-g', '--prefix', prefix, '--prefer-offline', '--no-audit', '--no-fund', tarball], { env });
  t.equal(installed.code, 0, 'npm install -g of the tarball succeeds');
  if (installed.code !== 0) {
    t.comment(installed.stderr.slice(-4000));
    return;
  }
  const bin = join(prefix, 'bin', 'mailauth');
  t.ok(existsSync(bin), `the mailauth command is at ${bin}`);
  const home = join(prefix, 'lib', 'node_modules', pkg.name);
  // No config file exists at /etc/mailauth here; commands that need none must not ask for one.
  const cliEnv = { PATH: process.env.PATH ?? '/usr/bin:/bin', HOME: work };

  const version = await run(bin, ['--version'], { env: cliEnv });
  t.same({ code: version.code, out: version.stdout.trim() }, { code: 0, out: pkg.version }, 'mailauth --version prints the package version');

  const schemes = await run(bin, ['pw', '-l'], { env: cliEnv });
  t.equal(schemes.code, 0, 'mailauth pw -l exits 0');
  for (const s of ['BLF-CRYPT', 'ARGON2ID', 'SSHA256', 'SHA512-CRYPT']) t.match(schemes.stdout, s, `pw -l lists ${s}`);

  const hashed = await run('sh', ['-c', `printf 'pw\\n' | "${bin}" pw -s SSHA256`], { env: cliEnv });
  t.match(hashed.stdout.trim(), /^\{SSHA256\}\S+$/, 'mailauth pw hashes from stdin with the installed native deps');

  const lua = await run(bin, ['lua-path'], { env: cliEnv });
  t.same({ code: lua.code, out: lua.stdout.trim() }, { code: 0, out: join(home, 'lua', 'mailauth.lua') }, 'lua-path prints the installed Lua script');
  t.ok(existsSync(lua.stdout.trim()), 'and it exists');
  const units = await run(bin, ['paths', 'units'], { env: cliEnv });
  t.same(readdirSync(units.stdout.trim()).sort(), ['mailauth-sync.service', 'mailauth-sync.timer', 'mailauth.service'], 'paths units lists the systemd units');
  const example = await run(bin, ['paths', 'config-example'], { env: cliEnv });
  t.ok(existsSync(example.stdout.trim()), 'the example config is installed');

  // doctor against a migrated test database; nothing listens on the port; no Dovecot here.
  const tdb = await createTestDatabase(t);
  const port = await freePort();
  const luaConf = join(work, 'dovecot-lua.conf');
  writeFileSync(luaConf, `url = http://127.0.0.1:${port}\n`);
  const cfg = join(work, 'config.yaml');
  writeFileSync(cfg, YAML.stringify({ listen: { address: `127.0.0.1:${port}` }, database: { url: tdb.url }, log: { level: 'silent' } }));
  const doctorArgs = ['--config', cfg, 'doctor', '--no-dovecot', '--lua-script', lua.stdout.trim(), '--lua-config', luaConf, '--timeout', '2000'];
  const doctor = await run(bin, doctorArgs, { env: cliEnv });
  t.equal(doctor.code, 0, 'doctor exits 0 (warnings only)');
  t.match(doctor.stdout, `✓ config: ${cfg} is valid`, 'config checked');
  t.match(doctor.stdout, `✓ database: ${tdb.name} at`, 'database reachable');
  t.match(doctor.stdout, /✓ schema: all \d+ tables present/, 'schema complete');
  t.match(doctor.stdout, `! listener 127.0.0.1:${port}: nothing listens`, 'listener: daemon not running is a warning');
  t.match(doctor.stdout, `✓ Lua script: ${lua.stdout.trim()} is the package's copy`, 'the installed Lua script');
  t.match(doctor.stdout, `✓ Lua settings: ${luaConf} → http://127.0.0.1:${port}`, 'Lua settings match the listener');
  t.match(doctor.stdout, `args = file=${lua.stdout.trim()} blocking=yes cache_key=%u%s`, 'prints the Dovecot passdb block');
  t.match(doctor.stdout, /\d+ checks: \d+ passed, \d+ warnings, 0 failed/, 'summary line');

  // The same, with the schema gone: a failure with its fix, exit 1.
  await tdb.sql('DROP TABLE app_passwd');
  const broken = await run(bin, [...doctorArgs, '--json'], { env: cliEnv });
  t.equal(broken.code, 1, 'doctor exits 1 when a check fails');
  const report = JSON.parse(broken.stdout) as { ok: boolean; checks: { id: string; status: string; fix?: string }[] };
  const schema = report.checks.find((c) => c.id === 'schema');
  t.same({ ok: report.ok, status: schema?.status }, { ok: false, status: 'fail' }, '--json reports the failed schema check');
  t.match(schema?.fix, 'mailauth db migrate', 'with its fix');
});
