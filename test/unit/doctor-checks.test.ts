/** The pure parts of `mailauth doctor`, and `mailauth paths` / `lua-path` (the Dovecot checks: doctor-dovecot.test.ts). */
import { existsSync } from 'node:fs';
import type { Stats } from 'node:fs';
import t from 'tap';
import { canRead, luaUrlFor, lookupUser, parseLuaConfig, secretFileCheck } from '../../src/cli/doctor-checks.js';
import type { DoctorIo, Principal } from '../../src/cli/doctor-checks.js';
import { PATH_NAMES, packagePaths } from '../../src/cli/paths.js';
import { cli } from '../helpers/cli.js';

t.test('parseLuaConfig: key = value lines, comments, problems by line', async (t) => {
  t.same(parseLuaConfig('# c\nurl = unix:/run/mailauth/mailauth.sock\n\n token_file=/etc/mailauth/token \n'), {
    values: { url: 'unix:/run/mailauth/mailauth.sock', token_file: '/etc/mailauth/token' },
    problems: [],
  });
  t.same(parseLuaConfig('url http://x\n').problems, ['line 1: expected key = value']);
});

t.test('luaUrlFor: what the Lua settings should say for each listener', async (t) => {
  t.equal(luaUrlFor({ kind: 'tcp', host: '127.0.0.1', port: 9082, loopback: true }), 'http://127.0.0.1:9082');
  t.equal(luaUrlFor({ kind: 'tcp', host: '0.0.0.0', port: 9082, loopback: false }), 'http://127.0.0.1:9082', 'a wildcard listener is reached on loopback');
  t.equal(luaUrlFor({ kind: 'tcp', host: '::1', port: 9082, loopback: true }), 'http://[::1]:9082');
  t.equal(luaUrlFor({ kind: 'unix', path: '/run/mailauth/mailauth.sock', mode: 0o660 }), 'unix:/run/mailauth/mailauth.sock');
});

t.test('lookupUser: passwd + group files', async (t) => {
  const passwd = 'root:x:0:0::/root:/bin/sh\nmailauth:x:998:997::/nonexistent:/usr/sbin/nologin\n';
  const group = 'root:x:0:\nmailauth:x:997:\ndovecot:x:120:mailauth,other\n';
  t.same(lookupUser('mailauth', passwd, group), { name: 'mailauth', uid: 998, gids: [997, 120] });
  t.equal(lookupUser('nobody', passwd, group), null);
});

function fakeIo(files: Record<string, { uid: number; gid: number; mode: number; dir?: boolean }>): DoctorIo {
  const stat = (p: string): Stats | null => {
    const f = files[p];
    if (!f) return null;
    return { uid: f.uid, gid: f.gid, mode: f.mode, isFile: () => !f.dir, isSocket: () => false } as unknown as Stats;
  };
  return {
    stat,
    lstat: stat,
    readText: () => null,
    realpath: (p) => p,
    user: () => null,
    doveconf: async () => ({ error: 'not here' }),
  };
}

t.test('canRead and secretFileCheck: owner, group, other, and every parent directory', async (t) => {
  const svc: Principal = { name: 'mailauth', uid: 998, gids: [997] };
  const tree = (fileMode: number, dirMode: number, dirGid = 997) =>
    fakeIo({
      '/': { uid: 0, gid: 0, mode: 0o755, dir: true },
      '/etc': { uid: 0, gid: 0, mode: 0o755, dir: true },
      '/etc/mailauth': { uid: 0, gid: dirGid, mode: dirMode, dir: true },
      '/etc/mailauth/token': { uid: 0, gid: 997, mode: fileMode },
    });
  t.ok(canRead(tree(0o640, 0o750), '/etc/mailauth/token', svc), 'root:mailauth 0640 in root:mailauth 0750');
  t.notOk(canRead(tree(0o600, 0o750), '/etc/mailauth/token', svc), 'root 0600: not for the group');
  t.notOk(canRead(tree(0o640, 0o750, 0), '/etc/mailauth/token', svc), 'directory root:root 0750: no search permission');
  t.ok(canRead(tree(0o600, 0o700), '/etc/mailauth/token', { name: 'root', uid: 0, gids: [0] }), 'root reads anything');

  const reader = { user: svc, why: 'w', fixGroup: 'mailauth' };
  t.equal(secretFileCheck(tree(0o640, 0o750), 's', 'k', '/etc/mailauth/token', reader).status, 'pass');
  t.match(secretFileCheck(tree(0o644, 0o750), 's', 'k', '/etc/mailauth/token', reader), { status: 'warn', title: /readable by every local user/ });
  t.match(secretFileCheck(tree(0o660, 0o750), 's', 'k', '/etc/mailauth/token', reader), { status: 'warn', title: /writable by its group/ });
  t.match(secretFileCheck(tree(0o600, 0o750), 's', 'k', '/etc/mailauth/token', reader), { status: 'fail', title: /mailauth cannot read/ });
  t.match(secretFileCheck(tree(0o640, 0o750), 's', 'k', '/etc/mailauth/nope', reader), { status: 'fail', title: /does not exist/ });
});

t.test('mailauth paths / lua-path', async (t) => {
  const paths = packagePaths();
  for (const name of PATH_NAMES) t.ok(existsSync(paths[name]), `${name}: ${paths[name]} exists in the checkout`);
  const one = await cli(['lua-path']);
  t.same({ code: one.code, out: one.stdout }, { code: 0, out: `${paths.lua}\n` });
  const units = await cli(['paths', 'units']);
  t.equal(units.stdout, `${paths.units}\n`);
  const all = await cli(['--json', 'paths']);
  t.same(all.json(), paths);
  const bad = await cli(['paths', 'nope']);
  t.equal(bad.code, 2, 'an unknown name is a usage error');
  t.match(bad.stderr, 'known: package, lua, units, config-example, docs');
});
