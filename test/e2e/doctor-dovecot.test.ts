/**
 * `mailauth doctor` against Dovecot's real `doveconf`: 2.3 on the host
 * (`--dovecot-config FILE`) and 2.4 in the Debian 13 root (`--dovecot-root
 * ROOT --dovecot-config FILE`). The documented configuration passes with exit
 * 0; each setting docs/dovecot.md calls broken fails (exit 1) with its fix; a
 * warning alone keeps exit 0. A saved `doveconf -n` output
 * (`--doveconf-output`) is read the same way.
 */
import { chmodSync, copyFileSync, mkdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import t from 'tap';
import YAML from 'yaml';
import { cli } from '../helpers/cli.js';
import { createTestDatabase } from '../helpers/db.js';
import { docBlock } from '../helpers/doc-blocks.js';
import { DEBIAN13_ROOT } from '../helpers/debian13-root.js';
import { DOVECOT_VERSIONS, freePort, LUA_SCRIPT, REPO_ROOT, requireDovecot, scratchDir } from '../helpers/dovecot.js';
import type { DovecotVersion } from '../helpers/dovecot.js';

interface Report {
  ok: boolean;
  checks: { id: string; status: string; title: string; detail?: string; fix?: string }[];
  dovecot: string;
  dovecotVersion: string | null;
}

/** What a configuration gets wrong; the empty set is the documented configuration. */
interface Breaks {
  inline?: boolean;
  noCacheKey?: boolean;
  cacheOff?: boolean;
  idle?: 'unset' | '2 days';
  workers?: number;
  noLuaPassdb?: boolean;
  invalid?: boolean;
}

function dovecotConf(v: DovecotVersion, script: string, luaConf: string, b: Breaks = {}): string {
  const cache = b.cacheOff ? '' : 'auth_cache_size = 10M\nauth_cache_ttl = 5 mins\nauth_cache_negative_ttl = 1 min\n';
  if (v === '2.3') {
    const passdb = b.noLuaPassdb ? 'passdb {\n  driver = passwd-file\n  args = /etc/dovecot/users\n}\n' : `passdb {\n  driver = lua\n  args = file=${script} blocking=${b.inline ? 'no' : 'yes'}${b.noCacheKey ? '' : ' cache_key=%u%s'}\n}\n`;
    const idle = b.idle === 'unset' ? '' : `service auth {\n  idle_kill = ${b.idle === '2 days' ? '2 days' : '4294967295 secs'}\n}\n`;
    return `protocols = imap\n${passdb}userdb {\n  driver = static\n  args = uid=vmail gid=vmail home=/var/vmail/%d/%n allow_all_users=yes\n}\nauth_mechanisms = plain login\n${cache}auth_worker_max_count = ${b.workers ?? 30}\nimport_environment = TZ MAILAUTH_LUA_CONFIG=${luaConf}\n${idle}${b.invalid ? 'lua_file = /x.lua\n' : ''}`;
  }
  const passdb = b.noLuaPassdb
    ? 'passdb passwd-file {\n  passwd_file_path = /etc/dovecot/users\n}\n'
    : `passdb lua {\n  lua_file = ${script}\n${b.inline ? '  use_worker = no\n' : ''}  lua_settings {\n    config_file = ${luaConf}\n${b.noCacheKey ? '    cache_key = %{user}\n' : ''}  }\n}\n`;
  const idle = b.idle === 'unset' ? '' : `service auth {\n  idle_kill_interval = ${b.idle === '2 days' ? '2 days' : 'infinite'}\n}\n`;
  return `dovecot_config_version = 2.4.1\ndovecot_storage_version = 2.4.1\nprotocols = imap\n${passdb}userdb static {\n  fields {\n    uid = vmail\n    gid = vmail\n    home = /var/vmail/%{user | domain}/%{user | username}\n  }\n}\nauth_mechanisms = plain login\n${cache}${idle}service auth-worker {\n  process_limit = ${b.workers ?? 30}\n}\n${b.invalid ? 'auth_worker_max_count = 30\n' : ''}`;
}

const statusOf = (r: Report, id: string): string | undefined => r.checks.find((c) => c.id === id)?.status;
const checkOf = (r: Report, id: string) => r.checks.find((c) => c.id === id);
const DOVECOT_IDS = ['dovecot', 'dovecot.passdb', 'dovecot.worker', 'dovecot.cache_key', 'dovecot.auth_cache', 'dovecot.idle_kill', 'dovecot.workers'];

for (const v of DOVECOT_VERSIONS) {
  t.test(`Dovecot ${v}: doctor reads doveconf and fails on every broken setting`, async (t) => {
    if (!requireDovecot(t, v)) return;
    const tdb = await createTestDatabase(t);
    const port = await freePort();
    const scratch = scratchDir(t, v);
    const host = (p: string): string => join(scratch.host, p);
    const inside = (p: string): string => join(scratch.inside, p);
    copyFileSync(LUA_SCRIPT, host('mailauth.lua'));
    chmodSync(host('mailauth.lua'), 0o644);
    writeFileSync(host('dovecot-lua.conf'), `url = http://127.0.0.1:${port}\n`, { mode: 0o644 });
    const cfg = host('mailauth.yaml');
    writeFileSync(cfg, YAML.stringify({ log: { level: 'silent', format: 'json' }, listen: { address: `127.0.0.1:${port}` }, database: { url: tdb.url }, auth: { hash_concurrency: 4 } }), { mode: 0o600 });

    let n = 0;
    async function doctor(b: Breaks): Promise<{ code: number; report: Report; stdout: string }> {
      const name = `dovecot-${++n}.conf`;
      writeFileSync(host(name), dovecotConf(v, inside('mailauth.lua'), inside('dovecot-lua.conf'), b), { mode: 0o644 });
      const where = v === '2.4' ? ['--dovecot-root', DEBIAN13_ROOT, '--dovecot-config', inside(name)] : ['--dovecot-config', host(name)];
      const r = await cli(['--config', cfg, '--json', 'doctor', '--no-idp', '--service-user', 'root', '--timeout', '2000', ...where]);
      return { code: r.code, report: r.json<Report>(), stdout: r.stdout };
    }

    const good = await doctor({});
    t.equal(good.code, 0, 'the documented configuration: exit 0');
    t.same(
      Object.fromEntries(DOVECOT_IDS.map((id) => [id, statusOf(good.report, id)])),
      Object.fromEntries(DOVECOT_IDS.map((id) => [id, 'pass'])),
      'every Dovecot check passes',
    );
    t.match(good.report.dovecotVersion, new RegExp(`^${v.replace('.', '\\.')}\\.`), `doveconf reports ${v}`);
    t.match(checkOf(good.report, 'dovecot')?.title, v === '2.4' ? `chroot ${DEBIAN13_ROOT} doveconf -n -P -c ${inside('dovecot-1.conf')}` : `doveconf -n -P -c ${host('dovecot-1.conf')}`);
    t.match(checkOf(good.report, 'lua.script'), { status: 'pass', title: new RegExp(`${inside('mailauth.lua')} matches the package`) }, 'the script Dovecot loads, found where Dovecot finds it');
    t.match(checkOf(good.report, 'lua.config'), { status: 'pass', title: new RegExp(`${inside('dovecot-lua.conf')} → http://127.0.0.1:${port}`) }, `the settings file named by ${v === '2.4' ? 'lua_settings { config_file }' : 'import_environment MAILAUTH_LUA_CONFIG'}`);
    t.match(good.report.dovecot, v === '2.4' ? /passdb lua \{\n\s+lua_file = .*\n[\s\S]*idle_kill_interval = infinite/ : /passdb \{\n\s+driver = lua\n[\s\S]*idle_kill = 4294967295 secs/, `the expected snippet is the ${v} form`);

    // docs/dovecot.md's block for this version, as printed there (and with docs/oauth.md's blocks added): doctor finds nothing.
    const docs = (text: string): string => text.replaceAll('/usr/share/mailauth/mailauth.lua', inside('mailauth.lua')).replaceAll('/etc/mailauth/dovecot-lua.conf', inside('dovecot-lua.conf'));
    const head = v === '2.4' ? 'dovecot_config_version = 2.4.1\ndovecot_storage_version = 2.4.1\n' : `import_environment = TZ MAILAUTH_LUA_CONFIG=${inside('dovecot-lua.conf')}\n`;
    const oauth = v === '2.4' ? docBlock('dovecot24-oauth2').replace('MAILAUTH_LISTEN_TOKEN', 'x') : `${docBlock('dovecot23-passdb')}${docBlock('dovecot23-mechanisms')}`;
    for (const [label, text] of [
      ['docs/dovecot.md', `${head}protocols = imap\n${docs(docBlock(`dovecot-${v}-auth`))}`],
      ['docs/dovecot.md + docs/oauth.md', `${head}protocols = imap\n${v === '2.3' ? docs(oauth) : ''}${docs(docBlock(`dovecot-${v}-auth`))}${v === '2.4' ? oauth : ''}`],
    ] as const) {
      writeFileSync(host('documented.conf'), text, { mode: 0o644 });
      const where = v === '2.4' ? ['--dovecot-root', DEBIAN13_ROOT, '--dovecot-config', inside('documented.conf')] : ['--dovecot-config', host('documented.conf')];
      const r = await cli(['--config', cfg, '--json', 'doctor', '--no-idp', '--service-user', 'root', '--timeout', '2000', ...where]);
      const report = r.json<Report>();
      t.same(
        Object.fromEntries(DOVECOT_IDS.map((id) => [id, statusOf(report, id)])),
        Object.fromEntries(DOVECOT_IDS.map((id) => [id, 'pass'])),
        `${label} (${v}): every Dovecot check passes`,
      );
      t.equal(r.code, 0, `${label} (${v}): exit 0`);
    }

    const broken = await doctor({ inline: true, noCacheKey: true, cacheOff: true, idle: 'unset', workers: 2 });
    t.equal(broken.code, 1, 'broken settings: exit 1');
    t.match(checkOf(broken.report, 'dovecot.worker'), { status: 'fail', title: v === '2.4' ? /use_worker = no/ : /blocking=no/ });
    if (v === '2.3') t.match(checkOf(broken.report, 'dovecot.cache_key'), { status: 'fail', title: /no cache_key/, fix: /cache_key=%u%s/ });
    else t.match(checkOf(broken.report, 'dovecot.cache_key'), { status: 'fail', title: /%\{user\} does not include the protocol/ });
    t.match(checkOf(broken.report, 'dovecot.auth_cache'), { status: 'fail', title: /auth cache is off/ });
    t.match(checkOf(broken.report, 'dovecot.idle_kill'), { status: 'fail', title: /after 1 min idle/, fix: v === '2.4' ? 'service auth { idle_kill_interval = infinite }' : 'service auth { idle_kill = 4294967295 secs }' });
    t.match(checkOf(broken.report, 'dovecot.workers'), { status: 'fail', title: /2 auth workers .* fewer than the 4/ });
    t.equal(statusOf(broken.report, 'dovecot.passdb'), 'pass');

    const warnOnly = await doctor({ idle: '2 days' });
    t.equal(statusOf(warnOnly.report, 'dovecot.idle_kill'), 'warn', 'an auth process kept two idle days: a warning');
    t.equal(warnOnly.code, 0, 'warnings keep exit 0');

    const noPassdb = await doctor({ noLuaPassdb: true });
    t.equal(noPassdb.code, 1);
    t.match(checkOf(noPassdb.report, 'dovecot.passdb'), { status: 'fail', title: /no Lua passdb loads mailauth\.lua/, detail: /passdbs: passwd-file/ });

    const invalid = await doctor({ invalid: true });
    t.equal(invalid.code, 1, 'a configuration doveconf refuses: exit 1');
    t.match(checkOf(invalid.report, 'dovecot'), { status: 'fail', title: v === '2.4' ? /auth_worker_max_count/ : /lua_file/ });

    // The script, unreadable by the dovecot user (in the root for 2.4), then gone.
    mkdirSync(host('private'), { mode: 0o700 });
    copyFileSync(LUA_SCRIPT, host('private/mailauth.lua'));
    writeFileSync(host('dovecot-private.conf'), dovecotConf(v, inside('private/mailauth.lua'), inside('dovecot-lua.conf')), { mode: 0o644 });
    const privateWhere = v === '2.4' ? ['--dovecot-root', DEBIAN13_ROOT, '--dovecot-config', inside('dovecot-private.conf')] : ['--dovecot-config', host('dovecot-private.conf')];
    const unreadable = await cli(['--config', cfg, '--json', 'doctor', '--no-idp', '--service-user', 'root', '--timeout', '2000', ...privateWhere]);
    t.equal(unreadable.code, 1);
    t.match(checkOf(unreadable.json<Report>(), 'lua.script'), { status: 'fail', title: /dovecot cannot read/, fix: /chmod 0644/ }, 'a script the dovecot user cannot read');
    chmodSync(host('private'), 0o755);
    const readable = await cli(['--config', cfg, '--json', 'doctor', '--no-idp', '--service-user', 'root', '--timeout', '2000', ...privateWhere]);
    t.equal(statusOf(readable.json<Report>(), 'lua.script'), 'pass', 'readable once the directory lets dovecot in');

    rmSync(host('mailauth.lua'));
    const gone = await doctor({});
    t.equal(gone.code, 1);
    t.match(checkOf(gone.report, 'lua.script'), { status: 'fail', title: /does not exist/, fix: /mailauth lua-path/ }, 'the script Dovecot names is missing');
  });
}

t.test('a saved doveconf output (--doveconf-output), without -P', async (t) => {
  const tdb = await createTestDatabase(t);
  const cfg = join(scratchDir(t, '2.3').host, 'mailauth.yaml');
  writeFileSync(cfg, YAML.stringify({ log: { level: 'silent', format: 'json' }, listen: { address: `127.0.0.1:${await freePort()}` }, database: { url: tdb.url }, auth: { hash_concurrency: 1 } }));
  const fixture = join(REPO_ROOT, 'test/fixtures/doveconf/2.4-hidden.txt');
  const r = await cli(['--config', cfg, '--json', 'doctor', '--no-idp', '--doveconf-output', fixture]);
  const report = r.json<Report>();
  t.match(checkOf(report, 'dovecot'), { status: 'pass', title: new RegExp(`Dovecot 2\\.4\\.1-4: configuration from ${fixture}`) });
  t.match(checkOf(report, 'dovecot.cache_key'), { status: 'warn', title: /hidden/ });
  t.match(checkOf(report, 'dovecot.worker'), { status: 'fail' });
  t.match(checkOf(report, 'lua.script'), { status: 'skip', title: /on the machine the doveconf output came from/ }, 'the script Dovecot names is on the other machine: not judged here');
  t.equal(r.code, 1);
  const withCopy = await cli(['--config', cfg, '--json', 'doctor', '--no-idp', '--doveconf-output', fixture, '--lua-script', join(REPO_ROOT, 'lua/mailauth.lua')]);
  t.equal(statusOf(withCopy.json<Report>(), 'lua.script'), 'pass', 'a copy given with --lua-script is checked');
  const crlf = join(scratchDir(t, '2.3').host, 'crlf.txt');
  writeFileSync(crlf, readFileSync(join(REPO_ROOT, 'test/fixtures/doveconf/2.4-good.txt'), 'utf8').replace(/\n/g, '\r\n'));
  const fromTty = await cli(['--config', cfg, '--json', 'doctor', '--no-idp', '--doveconf-output', crlf]);
  t.same(
    Object.fromEntries(DOVECOT_IDS.filter((id) => id !== 'dovecot.workers').map((id) => [id, statusOf(fromTty.json<Report>(), id)])),
    Object.fromEntries(DOVECOT_IDS.filter((id) => id !== 'dovecot.workers').map((id) => [id, 'pass'])),
    'output saved through a terminal (CRLF line ends, docker exec without -T) reads the same',
  );
  const absent = await cli(['--config', cfg, '--json', 'doctor', '--no-idp', '--doveconf-output', join(REPO_ROOT, 'nope.txt')]);
  t.match(checkOf(absent.json<Report>(), 'dovecot'), { status: 'fail', title: /cannot be read \(cannot read .*nope\.txt: ENOENT\)/ });
});
