/**
 * The Debian 13 (trixie) root that runs Dovecot 2.4 for the tests, next to the
 * host's Dovecot 2.3.
 *
 * - Built with `debootstrap --variant=minbase --include=PACKAGES trixie` from the
 *   Debian mirror this machine's own apt sources name (never a host written in
 *   the repository), into a temp folder beside the cache and renamed into place
 *   only once it validates, so a half-built root is never used.
 * - Cached in `$MAILAUTH_TEST_CACHE` (default /var/cache/mailauth-test) as
 *   `debian13/`; reused when it validates, rebuilt when missing or broken.
 * - Validated: `chroot ROOT dovecot --version` says 2.4, every package is
 *   installed, the Lua auth module, luasocket, lua-cjson and managesieve are
 *   there, and /dev holds the nodes Dovecot opens.
 * - No shared mounts. debootstrap creates /dev/null, /dev/urandom, … inside the
 *   root (mknod); where it could not, the build creates them. Dovecot 2.4 runs
 *   without /proc in the root (verified: logins, Lua, the auth cache and
 *   `doveadm stop`), so concurrent test files never fight over mount points.
 * - Concurrency: builds take an exclusive flock on `CACHE/debian13.lock`;
 *   another test file that finds the root missing waits for that build, then
 *   validates again instead of building twice.
 *
 * `.ci/run` calls this file before `npm test`:
 *   node --import @tapjs/typescript/import test/helpers/debian13-root.ts
 * which prints whether the root was cached or built and how long it took, and
 * exits 1 if no valid root can be had.
 */
import { spawnSync } from 'node:child_process';
import { closeSync, existsSync, mkdirSync, openSync, readFileSync, readdirSync, renameSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';

export const DEBIAN13_SUITE = 'trixie';
export const DEBIAN13_PACKAGES = [
  'dovecot-core',
  'dovecot-imapd',
  'dovecot-pop3d',
  'dovecot-managesieved',
  'dovecot-auth-lua',
  'lua-socket',
  'lua-cjson',
] as const;

export const TEST_CACHE_DIR = process.env.MAILAUTH_TEST_CACHE ?? '/var/cache/mailauth-test';
export const DEBIAN13_ROOT = join(TEST_CACHE_DIR, 'debian13');
const LOCK_FILE = join(TEST_CACHE_DIR, 'debian13.lock');
/** Written last, after validation; lists the packages the root was built with. */
const MARKER = '.mailauth-test-root';

/** Device nodes Dovecot (and the shell tools in the root) open: name, major, minor. */
const DEV_NODES: [string, number, number][] = [
  ['null', 1, 3],
  ['zero', 1, 5],
  ['full', 1, 7],
  ['random', 1, 8],
  ['urandom', 1, 9],
];

/**
 * The Debian mirror URI of this machine's main suite, from deb822 `.sources`
 * files or a one-line `sources.list` (the first `deb` entry whose suite is not
 * -security/-updates/-backports). `MAILAUTH_DEBIAN_MIRROR` overrides it.
 */
export function aptMirror(etcApt = '/etc/apt'): string | null {
  if (process.env.MAILAUTH_DEBIAN_MIRROR) return process.env.MAILAUTH_DEBIAN_MIRROR;
  const candidates: { uri: string; suites: string[] }[] = [];
  const dir = join(etcApt, 'sources.list.d');
  let files: string[] = [];
  try {
    files = readdirSync(dir).filter((f) => f.endsWith('.sources')).sort();
  } catch {
    // no such folder
  }
  for (const f of files) {
    for (const stanza of readFileSync(join(dir, f), 'utf8').split(/\n\s*\n/)) {
      const field = (name: string) => new RegExp(`^${name}:\\s*(.+)$`, 'im').exec(stanza)?.[1]?.trim().split(/\s+/) ?? [];
      if (!field('Types').includes('deb')) continue;
      if (/^Enabled:\s*no/im.test(stanza)) continue;
      for (const uri of field('URIs')) candidates.push({ uri, suites: field('Suites') });
    }
  }
  const list = join(etcApt, 'sources.list');
  if (existsSync(list)) {
    for (const line of readFileSync(list, 'utf8').split('\n')) {
      const m = /^\s*deb\s+(?:\[[^\]]*\]\s+)?(\S+)\s+(\S+)/.exec(line);
      if (m?.[1] && m[2]) candidates.push({ uri: m[1], suites: [m[2]] });
    }
  }
  const main = candidates.find((c) => /^https?:\/\//.test(c.uri) && c.suites.some((s) => !s.includes('-') && !s.includes('/')));
  return main?.uri ?? null;
}

function chroot(root: string, args: string[], timeoutMs = 30_000) {
  return spawnSync('chroot', [root, ...args], { encoding: 'utf8', timeout: timeoutMs });
}

function isCharDevice(path: string): boolean {
  try {
    return statSync(path).isCharacterDevice();
  } catch {
    return false;
  }
}

/** Why ROOT cannot run the tests' Dovecot 2.4, or null when it can. */
export function debian13RootProblem(root = DEBIAN13_ROOT): string | null {
  if (process.getuid?.() !== 0) return 'chroot needs root';
  if (!existsSync(join(root, 'usr/sbin/dovecot'))) return `${root}: no usr/sbin/dovecot`;
  const version = chroot(root, ['dovecot', '--version']);
  if (version.status !== 0 || !/^2\.4\./.test(version.stdout)) {
    return `${root}: chroot dovecot --version gave ${JSON.stringify((version.stdout || version.stderr || String(version.error ?? '')).trim())}, not 2.4`;
  }
  const dpkg = chroot(root, ['dpkg-query', '-W', '-f=${Package} ${Status}\\n', ...DEBIAN13_PACKAGES]);
  for (const pkg of DEBIAN13_PACKAGES) {
    if (!new RegExp(`^${pkg} install ok installed$`, 'm').test(dpkg.stdout ?? '')) return `${root}: package ${pkg} is not installed`;
  }
  const files = [
    'usr/lib/dovecot/modules/auth/libauthdb_lua.so',
    'usr/lib/dovecot/managesieve-login',
    'usr/lib/dovecot/imap-login',
    'usr/lib/dovecot/pop3-login',
    'usr/share/lua/5.4/socket/http.lua',
  ];
  for (const f of files) if (!existsSync(join(root, f))) return `${root}: ${f} missing`;
  const libLua = readdirSync(join(root, 'usr/lib')).filter((d) => existsSync(join(root, 'usr/lib', d, 'lua/5.4')));
  for (const rel of ['socket/core.so', 'socket/unix.so', 'cjson.so']) {
    if (!libLua.some((d) => existsSync(join(root, 'usr/lib', d, 'lua/5.4', rel)))) return `${root}: Lua 5.4 C module ${rel} missing`;
  }
  for (const [name] of DEV_NODES) if (!isCharDevice(join(root, 'dev', name))) return `${root}: /dev/${name} is not a device node`;
  if (!existsSync(join(root, MARKER))) return `${root}: no ${MARKER} (the build did not finish)`;
  return null;
}

/** Create /dev nodes debootstrap could not (inside containers mknod may have been skipped). */
function ensureDevNodes(root: string): void {
  mkdirSync(join(root, 'dev'), { recursive: true });
  for (const [name, major, minor] of DEV_NODES) {
    const path = join(root, 'dev', name);
    if (isCharDevice(path)) continue;
    rmSync(path, { force: true });
    const r = spawnSync('mknod', ['-m', '666', path, 'c', String(major), String(minor)], { encoding: 'utf8' });
    if (r.status !== 0) throw new Error(`mknod ${path}: ${r.stderr}`);
  }
}

/** Host accounts the root must know by the same ids: Postfix's, so a Dovecot 2.4 listener can be `user = postfix`. */
const SHARED_ACCOUNTS = ['postfix'];

function accountLine(file: string, name: string): string | undefined {
  try {
    return readFileSync(file, 'utf8').split('\n').find((l) => l.startsWith(`${name}:`));
  } catch {
    return undefined;
  }
}

/**
 * Give the root the host's `postfix` user and group with the host's ids (when
 * the host has them), so socket ownership means the same on both sides. Cheap;
 * run on every ensure, under the lock when something must change.
 */
function accountsProblem(root: string): string | null {
  for (const name of SHARED_ACCOUNTS) {
    const host = accountLine('/etc/passwd', name);
    if (!host) continue;
    const [, , uid, gid] = host.split(':');
    const mine = accountLine(join(root, 'etc/passwd'), name)?.split(':');
    if (!mine || mine[2] !== uid || mine[3] !== gid) return `${root}: no ${name} user with the host's uid ${uid}`;
  }
  return null;
}

function syncAccounts(root: string): void {
  for (const name of SHARED_ACCOUNTS) {
    const host = accountLine('/etc/passwd', name);
    if (!host) continue;
    const [, , uid = '', gid = ''] = host.split(':');
    const hostGroup = accountLine('/etc/group', name);
    for (const [file, line] of [
      ['etc/passwd', `${name}:x:${uid}:${gid}::/var/spool/postfix:/usr/sbin/nologin`],
      ['etc/group', hostGroup ? `${name}:x:${hostGroup.split(':')[2] ?? gid}:` : undefined],
    ] as const) {
      if (!line) continue;
      const path = join(root, file);
      const kept = readFileSync(path, 'utf8').split('\n').filter((l) => l !== '' && !l.startsWith(`${name}:`));
      writeFileSync(path, `${kept.join('\n')}\n${line}\n`);
    }
  }
}

export interface EnsureResult {
  root: string;
  /** 'cached': validated as it was; 'adopted': a finished root at another path was validated and renamed; 'built': debootstrap ran. */
  how: 'cached' | 'adopted' | 'built';
  ms: number;
}

function log(line: string, quiet: boolean): void {
  if (!quiet) process.stderr.write(`[debian13-root] ${line}\n`);
}

/** Hold an exclusive flock on LOCK_FILE while fn runs (flock(1) locks the open file description we share with it). */
function withLock<T>(fn: () => T): T {
  mkdirSync(TEST_CACHE_DIR, { recursive: true });
  const fd = openSync(LOCK_FILE, 'a');
  try {
    const r = spawnSync('flock', ['-x', '-w', '1800', '3'], { stdio: ['ignore', 'inherit', 'inherit', fd] });
    if (r.status !== 0) throw new Error(`could not lock ${LOCK_FILE} (flock exit ${r.status ?? r.error?.message})`);
    return fn();
  } finally {
    closeSync(fd);
  }
}

function finish(candidate: string, root: string): void {
  ensureDevNodes(candidate);
  syncAccounts(candidate);
  writeFileSync(join(candidate, MARKER), `${DEBIAN13_SUITE}\n${DEBIAN13_PACKAGES.join('\n')}\n`);
  const problem = debian13RootProblem(candidate);
  if (problem) throw new Error(`the new root does not validate: ${problem}`);
  // Move a broken old root out of the way, then rename: readers see either no root or a whole one.
  const old = `${root}.old-${process.pid}`;
  if (existsSync(root)) renameSync(root, old);
  renameSync(candidate, root);
  rmSync(old, { recursive: true, force: true });
}

/**
 * A valid Debian 13 root at DEBIAN13_ROOT: the cached one when it validates;
 * otherwise (under the lock) an already finished `debian13.building` next to it,
 * or a fresh debootstrap. Throws with the reason when none can be had.
 * Synchronous on purpose: test files call it before their first subtest.
 */
export function ensureDebian13Root(opts: { quiet?: boolean } = {}): EnsureResult {
  const quiet = opts.quiet ?? false;
  const started = Date.now();
  const root = DEBIAN13_ROOT;
  if (debian13RootProblem(root) === null && accountsProblem(root) === null) return { root, how: 'cached', ms: Date.now() - started };
  return withLock(() => {
    const problem = debian13RootProblem(root);
    if (problem === null) {
      if (accountsProblem(root) !== null) {
        syncAccounts(root);
        const left = accountsProblem(root);
        if (left) throw new Error(left);
      }
      return { root, how: 'cached', ms: Date.now() - started };
    }
    log(`rebuilding: ${problem}`, quiet);

    // A root someone finished building by hand (same packages) is adopted rather than rebuilt.
    const building = join(TEST_CACHE_DIR, 'debian13.building');
    if (existsSync(building) && spawnSync('pgrep', ['-x', 'debootstrap']).status !== 0) {
      const dpkg = chroot(building, ['dpkg-query', '-W', '-f=${Package} ${Status}\\n', ...DEBIAN13_PACKAGES]);
      if (DEBIAN13_PACKAGES.every((p) => new RegExp(`^${p} install ok installed$`, 'm').test(dpkg.stdout ?? ''))) {
        try {
          finish(building, root);
          log(`adopted ${building}`, quiet);
          return { root, how: 'adopted' as const, ms: Date.now() - started };
        } catch (err) {
          log(`could not adopt ${building}: ${(err as Error).message}`, quiet);
        }
      }
    }

    const mirror = aptMirror();
    if (!mirror) throw new Error('no Debian mirror found in /etc/apt/sources.list.d/*.sources or /etc/apt/sources.list (set MAILAUTH_DEBIAN_MIRROR)');
    if (spawnSync('sh', ['-c', 'command -v debootstrap']).status !== 0) throw new Error('debootstrap not installed (apt-get install debootstrap)');
    const tmp = `${root}.tmp-${process.pid}`;
    rmSync(tmp, { recursive: true, force: true });
    log(`debootstrap --variant=minbase ${DEBIAN13_SUITE} from ${mirror} into ${tmp}`, quiet);
    const r = spawnSync(
      'debootstrap',
      ['--variant=minbase', `--include=${DEBIAN13_PACKAGES.join(',')}`, DEBIAN13_SUITE, tmp, mirror],
      { encoding: 'utf8', stdio: ['ignore', 'pipe', 'pipe'], timeout: 30 * 60_000, maxBuffer: 64 * 1024 * 1024 },
    );
    if (r.status !== 0) {
      const tail = `${r.stdout ?? ''}${r.stderr ?? ''}`.trim().split('\n').slice(-15).join('\n');
      rmSync(tmp, { recursive: true, force: true });
      throw new Error(`debootstrap failed (exit ${r.status ?? r.error?.message}):\n${tail}`);
    }
    try {
      finish(tmp, root);
    } catch (err) {
      rmSync(tmp, { recursive: true, force: true });
      throw err;
    }
    return { root, how: 'built' as const, ms: Date.now() - started };
  });
}

// CLI: `.ci/run` builds or validates the root before the tests and prints the time it took.
if (process.argv[1] && fileURLToPath(import.meta.url) === process.argv[1]) {
  try {
    const res = ensureDebian13Root();
    const version = chroot(res.root, ['dovecot', '--version']).stdout.trim();
    process.stdout.write(`Debian 13 root ${res.root} (Dovecot ${version}): ${res.how} in ${(res.ms / 1000).toFixed(1)} s\n`);
  } catch (err) {
    process.stderr.write(`Debian 13 root for Dovecot 2.4: ${(err as Error).message}\n`);
    process.exit(1);
  }
}
