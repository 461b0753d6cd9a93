/**
 * A private Postfix instance (Debian's package) for SMTP AUTH tests: its own
 * config directory (`postfix -c DIR`), queue and data directories, log file
 * and an smtpd on a loopback port the test picks, STARTTLS with a throwaway
 * self-signed certificate, and the SASL settings of docs/dovecot.md (block
 * `postfix-main-cf`: smtpd_sasl_type = dovecot, smtpd_sasl_path = private/auth).
 * /etc/postfix and the system's Postfix are never touched, and no mail is ever
 * delivered (every transport is `error:`; the tests quit after AUTH).
 *
 *   const pf = await startPostfix(t, { dir: scratchDir(t, version).host });
 *   const dv = await startDovecot(t, { version, docs: [..., `dovecot-${version}-postfix`], postfixQueueDir: pf.queueDir, ... });
 *   const r = await pf.smtpAuth('alice@example.org', 'pw', { mech: 'PLAIN' });   // r.code 235 / 535 / …
 *
 * Start Postfix first: it creates the queue directory, in whose `private/`
 * Dovecot then creates the auth socket. For Dovecot 2.4 (chroot) the directory
 * must be inside the Debian 13 root: pass `scratchDir(t, '2.4').host`.
 * Needs root (Postfix's master runs as root) and swaks for smtpAuth().
 */
import { execFile, spawnSync } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { chmodSync, existsSync, mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { docBlock } from './doc-blocks.js';
import { freePort, killLeftovers, processTree } from './dovecot.js';
import { requireTool } from './require-tool.js';
import type { TapLike } from './require-tool.js';

/** Why the Postfix tests cannot run here, or null. */
export function postfixMissing(): string | null {
  for (const tool of ['postfix', 'postconf', 'swaks', 'openssl']) {
    if (spawnSync('sh', ['-c', `command -v ${tool}`]).status !== 0) return `${tool} not found (apt-get install postfix swaks openssl)`;
  }
  if (process.getuid?.() !== 0) return 'a private Postfix instance needs root';
  if (spawnSync('id', ['postfix']).status !== 0) return 'no postfix user (apt-get install postfix)';
  return null;
}

/** Like requireDovecot: fails in CI (CI=true), skips loudly elsewhere. */
export function requirePostfix(t: TapLike): boolean {
  return requireTool(t, 'Postfix', postfixMissing());
}

export interface StartPostfixOptions {
  /** Folder to create the instance in (host path); default a new temp folder. Use scratchDir(t, '2.4').host for Dovecot 2.4. */
  dir?: string;
  /** main.cf blocks from docs/ (default ['postfix-main-cf']), appended after the instance's own settings. */
  docs?: string[];
  /** Appended to main.cf after the docs blocks. */
  extraMainCf?: string;
}

export interface SmtpAuthResult {
  /** The SMTP reply code to AUTH (235 success, 535 refused, 454 temporary, …); 0 when no reply was seen. */
  code: number;
  /** The reply line to AUTH, e.g. '535 5.7.8 Error: authentication failed: authentication failure'. */
  reply: string;
  /** swaks' whole transcript (the password is in it base64-encoded; tests only). */
  transcript: string;
}

export interface PostfixInstance {
  dir: string;
  configDir: string;
  /** Postfix's queue directory (host path); the SASL socket is private/auth in it. */
  queueDir: string;
  port: number;
  /**
   * AUTH after STARTTLS with swaks, then QUIT (no mail is sent). Each call connects
   * from its own loopback address (127.x.y.z, or `clientIp`): Dovecot's auth process
   * delays failures per client IP (2, 4, 8, 15 s), which would otherwise add up.
   */
  smtpAuth(user: string, password: string, opts?: { mech?: 'PLAIN' | 'LOGIN'; clientIp?: string }): Promise<SmtpAuthResult>;
  /** EHLO after STARTTLS: the advertised AUTH mechanisms (e.g. ['PLAIN', 'LOGIN']). */
  authMechanisms(): Promise<string[]>;
  log(): string;
  stop(): Promise<void>;
}

function run(cmd: string, args: string[], timeoutMs = 60_000): Promise<{ code: number; stdout: string; stderr: string }> {
  return new Promise((done) => {
    execFile(cmd, args, { timeout: timeoutMs, encoding: 'utf8' }, (err, stdout, stderr) => {
      const code = err ? (typeof (err as { code?: unknown }).code === 'number' ? (err as { code: number }).code : -1) : 0;
      done({ code, stdout, stderr });
    });
  });
}

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

/** An address in 127.64.0.0/10 (all of 127/8 is loopback on Linux), away from 127.0.0.x. */
export function randomLoopbackIp(): string {
  const b = randomBytes(3);
  return `127.${64 + ((b[0] ?? 0) & 63)}.${b[1] ?? 0}.${Math.max(1, Math.min(254, b[2] ?? 1))}`;
}

function masterCf(port: number): string {
  // Debian's services without chroot (the private queue directory has no chroot environment).
  return `# private test instance written by test/helpers/postfix.ts
127.0.0.1:${port} inet n - n - - smtpd
pickup     unix  n - n 60    1 pickup
cleanup    unix  n - n -     0 cleanup
qmgr       unix  n - n 300   1 qmgr
tlsmgr     unix  - - n 1000? 1 tlsmgr
rewrite    unix  - - n -     - trivial-rewrite
bounce     unix  - - n -     0 bounce
defer      unix  - - n -     0 bounce
trace      unix  - - n -     0 bounce
verify     unix  - - n -     1 verify
flush      unix  n - n 1000? 0 flush
proxymap   unix  - - n -     - proxymap
proxywrite unix  - - n -     1 proxymap
smtp       unix  - - n -     - smtp
relay      unix  - - n -     - smtp
showq      unix  n - n -     - showq
error      unix  - - n -     - error
retry      unix  - - n -     - error
discard    unix  - - n -     - discard
local      unix  - n n -     - local
anvil      unix  - - n -     1 anvil
scache     unix  - - n -     1 scache
postlog    unix-dgram n - n - 1 postlogd
`;
}

function mainCf(dir: string, docs: string[], extra: string): string {
  return `# private test instance written by test/helpers/postfix.ts
compatibility_level = 3.6
queue_directory = ${dir}/queue
data_directory = ${dir}/data
mail_owner = postfix
myhostname = mailauth-test.invalid
mydomain = invalid
mydestination =
relay_domains =
mynetworks = 127.0.0.2/32
inet_interfaces = 127.0.0.1
inet_protocols = ipv4
alias_maps =
alias_database =
# Never deliver anything anywhere.
default_transport = error:mailauth tests deliver no mail
local_transport = error:mailauth tests deliver no mail
relayhost =
maillog_file = ${dir}/postfix.log
maillog_file_prefixes = ${dir}
smtpd_tls_cert_file = ${dir}/cert.pem
smtpd_tls_key_file = ${dir}/key.pem
smtpd_tls_security_level = may
smtpd_banner = $myhostname ESMTP mailauth-test
biff = no
${docs.map((id) => `# --- docs block ${id} ---\n${docBlock(id)}`).join('\n')}
${extra}
`;
}

export async function startPostfix(t: { teardown(fn: () => unknown): void }, opts: StartPostfixOptions = {}): Promise<PostfixInstance> {
  const parent = opts.dir ?? mkdtempSync(join(tmpdir(), 'map-'));
  const dir = join(parent, 'postfix');
  mkdirSync(dir, { recursive: true });
  chmodSync(parent, 0o755);
  chmodSync(dir, 0o755);
  const configDir = join(dir, 'conf');
  mkdirSync(configDir);
  const queueDir = join(dir, 'queue');
  const logPath = join(dir, 'postfix.log');
  const conf = ['-c', configDir];

  const cert = await run('openssl', [
    'req', '-x509', '-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:prime256v1', '-nodes',
    '-keyout', join(dir, 'key.pem'), '-out', join(dir, 'cert.pem'), '-subj', '/CN=mailauth-test.invalid', '-days', '2',
  ]);
  if (cert.code !== 0) throw new Error(`openssl: ${cert.stderr}`);
  chmodSync(join(dir, 'key.pem'), 0o600);

  const readPid = (): number | null => {
    try {
      const pid = Number.parseInt(readFileSync(join(queueDir, 'pid/master.pid'), 'utf8').trim(), 10);
      return Number.isInteger(pid) && pid > 0 ? pid : null;
    } catch {
      return null;
    }
  };
  let stopped = false;
  const stop = async (): Promise<void> => {
    if (stopped) return;
    stopped = true;
    const master = readPid();
    const tree = master === null ? new Map<number, string>() : processTree(master);
    await run('postfix', [...conf, 'abort']);
    await killLeftovers(tree);
    rmSync(opts.dir ? dir : parent, { recursive: true, force: true });
  };
  t.teardown(stop);

  let port = 0;
  let lastError = '';
  for (let attempt = 0; attempt < 5; attempt++) {
    port = await freePort();
    writeFileSync(join(configDir, 'main.cf'), mainCf(dir, opts.docs ?? ['postfix-main-cf'], opts.extraMainCf ?? ''));
    writeFileSync(join(configDir, 'master.cf'), masterCf(port));
    // postfix chdirs into the queue directory first; `postfix check` then creates what is missing inside it.
    mkdirSync(queueDir, { recursive: true, mode: 0o755 });
    mkdirSync(join(dir, 'data'), { recursive: true, mode: 0o700 });
    spawnSync('chown', ['postfix:', join(dir, 'data')]);
    const checked = await run('postfix', [...conf, 'check']);
    const res = checked.code === 0 ? await run('postfix', [...conf, 'start']) : checked;
    lastError = res.code === 0 ? '' : `postfix -c ${configDir} start exited ${res.code}: ${res.stderr}${res.stdout}\n${existsSync(logPath) ? readFileSync(logPath, 'utf8') : ''}`;
    if (res.code !== 0) break;
    // Ready when smtpd answers; a port taken meanwhile shows up as a bind error in the log.
    const readyBy = Date.now() + 15_000;
    let up = false;
    while (Date.now() < readyBy) {
      const banner = await run('swaks', ['--server', '127.0.0.1', '--port', String(port), '--quit-after', 'CONNECT', '--timeout', '5']);
      if (/mailauth-test/.test(banner.stdout)) {
        up = true;
        break;
      }
      if (existsSync(logPath) && /in use/i.test(readFileSync(logPath, 'utf8'))) break;
      await sleep(200);
    }
    if (up) break;
    lastError = `Postfix did not answer on 127.0.0.1:${port}\n${existsSync(logPath) ? readFileSync(logPath, 'utf8') : ''}`;
    await run('postfix', [...conf, 'abort']);
    if (!/in use/i.test(lastError)) break;
  }
  if (lastError) throw new Error(lastError);

  const swaks = (args: string[]) => run('swaks', ['--server', '127.0.0.1', '--port', String(port), '--tls', '--timeout', '30', ...args]);
  return {
    dir,
    configDir,
    queueDir,
    port,
    async smtpAuth(user, password, o = {}) {
      const res = await swaks([
        '--local-interface', o.clientIp ?? randomLoopbackIp(),
        '--quit-after', 'AUTH', '--auth', o.mech ?? 'PLAIN', '--auth-user', user, '--auth-password', password,
      ]);
      const transcript = `${res.stdout}${res.stderr}`;
      // Server lines are "<~  235 …" (or "<~* 535 …" for an error) after STARTTLS.
      const replies = transcript.split('\n').map((l) => /^<~?\*?\s+(\d{3})[ -](.*)$/.exec(l)).filter((m) => m !== null);
      const last = replies.filter((m) => /^(235|334|4\d\d|5\d\d)$/.test(m[1] ?? '') && m[1] !== '334').at(-1);
      return { code: last ? Number(last[1]) : 0, reply: last ? `${last[1]} ${last[2]}` : '', transcript };
    },
    async authMechanisms() {
      const res = await swaks(['--quit-after', 'HELO']);
      const m = /^<~\s+250[ -]AUTH (.+)$/m.exec(res.stdout);
      return m?.[1]?.trim().split(/\s+/) ?? [];
    },
    log: () => (existsSync(logPath) ? readFileSync(logPath, 'utf8') : ''),
    stop,
  };
}
