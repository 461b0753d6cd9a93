/**
 * Private Dovecot instances for the benchmark (own base_dir, loopback port, no
 * system config; the system Dovecot is never touched), with either passdb:
 *   lua  lua/mailauth.lua → the mailauth daemon
 *   sql  Dovecot's own passdb sql (dovecot-mysql) on the same mailbox table,
 *        through a MariaDB account with a password (the auth master runs as
 *        `dovecot` and connects too, so unix_socket root cannot be used).
 * Auth cache off in both, static userdb in both.
 */
import { execFile, spawn } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { chmodSync, chownSync, closeSync, copyFileSync, existsSync, mkdirSync, mkdtempSync, openSync, readFileSync, readdirSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { freePort } from '../../test/helpers/dovecot.js';
import { ROOT } from './processes.js';

export interface BenchDovecot {
  dir: string;
  imapPort: number;
  authSocket: string;
  stop(): Promise<void>;
  log(): string;
}

export type Passdb =
  | { kind: 'lua'; url: string; httpClient?: string }
  | { kind: 'sql'; host: string; port: number; database: string; user: string; password: string };

const NATIVE_QUERY =
  "SELECT m.password FROM mailbox m JOIN domain d ON d.domain = m.domain WHERE m.username = '%u' AND m.active = '1' AND d.active = '1' AND JSON_UNQUOTE(JSON_VALUE(m.attributes, '$.%s_access')) = '1'";

function run(cmd: string, args: string[]): Promise<number> {
  return new Promise((done) => execFile(cmd, args, { timeout: 30_000 }, (err) => done(err ? 1 : 0)));
}

function masterPid(dir: string): number | null {
  try {
    return Number.parseInt(readFileSync(join(dir, 'run/master.pid'), 'utf8'), 10) || null;
  } catch {
    return null;
  }
}

function startTime(pid: number): string | null {
  try {
    const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
    return stat.slice(stat.lastIndexOf(')') + 2).split(' ')[19] ?? null;
  } catch {
    return null;
  }
}

/** The master and its descendants with their start times, so stop() only ever kills what this instance started. */
function tree(root: number): Array<[number, string]> {
  const parent = new Map<number, number>();
  for (const e of readdirSync('/proc')) {
    if (!/^\d+$/.test(e)) continue;
    try {
      const stat = readFileSync(`/proc/${e}/stat`, 'utf8');
      parent.set(Number(e), Number(stat.slice(stat.lastIndexOf(')') + 2).split(' ')[1]));
    } catch {
      // gone
    }
  }
  const out = [root];
  for (let i = 0; i < out.length; i++) for (const [c, p] of parent) if (p === out[i]) out.push(c);
  return out.flatMap((pid) => {
    const st = startTime(pid);
    return st === null ? [] : [[pid, st] as [number, string]];
  });
}

export async function startBenchDovecot(passdb: Passdb, opts: { workers: number }): Promise<BenchDovecot> {
  const dir = mkdtempSync(join(tmpdir(), 'mab-dc-'));
  chmodSync(dir, 0o755);
  mkdirSync(join(dir, 'mail'));
  chmodSync(join(dir, 'mail'), 0o1777);
  const name = `mailauth-bench-${randomBytes(3).toString('hex')}`;
  let passdbBlock: string;
  let env = '';
  if (passdb.kind === 'lua') {
    copyFileSync(join(ROOT, 'lua/mailauth.lua'), join(dir, 'mailauth.lua'));
    chmodSync(join(dir, 'mailauth.lua'), 0o644);
    const lines = [`url = ${passdb.url}`, ...(passdb.httpClient ? [`http_client = ${passdb.httpClient}`] : [])];
    writeFileSync(join(dir, 'mailauth-lua.conf'), `${lines.join('\n')}\n`, { mode: 0o644 });
    env = `import_environment = TZ MAILAUTH_LUA_CONFIG=${dir}/mailauth-lua.conf`;
    passdbBlock = `passdb {\n  driver = lua\n  args = file=${dir}/mailauth.lua blocking=yes\n}`;
  } else {
    const sqlConf = join(dir, 'sql.conf.ext');
    writeFileSync(
      sqlConf,
      `driver = mysql\nconnect = host=${passdb.host} port=${passdb.port} dbname=${passdb.database} user=${passdb.user} password=${passdb.password}\npassword_query = ${NATIVE_QUERY}\n`,
      { mode: 0o640 },
    );
    // Readable by the auth processes (user dovecot), by nobody else.
    const gid = Number(/^dovecot:[^:]*:(\d+):/m.exec(readFileSync('/etc/group', 'utf8'))?.[1] ?? 0);
    chownSync(sqlConf, 0, gid);
    passdbBlock = `passdb {\n  driver = sql\n  args = ${sqlConf}\n}`;
  }
  const imapPort = await freePort();
  const conf = join(dir, 'dovecot.conf');
  writeFileSync(
    conf,
    `base_dir = ${dir}/run
state_dir = ${dir}/state
instance_name = ${name}
log_path = ${dir}/dovecot.log
protocols = imap
listen = 127.0.0.1
ssl = no
disable_plaintext_auth = no
auth_mechanisms = plain login
auth_failure_delay = 0
auth_cache_size = 0
auth_worker_max_count = ${opts.workers}
login_trusted_networks = 127.0.0.0/8
${env}
default_internal_user = dovecot
default_login_user = dovenull
mail_location = maildir:${dir}/mail/%u
first_valid_uid = 1
service imap-login {
  inet_listener imap {
    address = 127.0.0.1
    port = ${imapPort}
  }
  inet_listener imaps {
    port = 0
  }
}
${passdbBlock}
userdb {
  driver = static
  args = uid=nobody gid=nogroup home=${dir}/mail/%u allow_all_users=yes
}
`,
  );
  const errFile = join(dir, 'startup.err');
  const fd = openSync(errFile, 'w');
  const code = await new Promise<number>((done) => {
    const child = spawn('dovecot', ['-c', conf], { stdio: ['ignore', fd, fd] });
    child.on('error', () => done(-1));
    child.on('exit', (c) => done(c ?? -1));
  });
  closeSync(fd);
  const log = () => (existsSync(join(dir, 'dovecot.log')) ? readFileSync(join(dir, 'dovecot.log'), 'utf8') : '');
  if (code !== 0) throw new Error(`dovecot -c ${conf} failed: ${readFileSync(errFile, 'utf8')}${log()}`);
  const authSocket = join(dir, 'run/auth-client');
  for (let i = 0; i < 100 && !existsSync(authSocket); i++) await new Promise((r) => setTimeout(r, 50));
  return {
    dir,
    imapPort,
    authSocket,
    log,
    async stop() {
      const master = masterPid(dir);
      const pids = master === null ? [] : tree(master);
      await run('dovecot', ['-c', conf, 'stop']);
      for (let i = 0; i < 100 && master !== null && existsSync(`/proc/${master}`); i++) await new Promise((r) => setTimeout(r, 50));
      for (const [pid, st] of pids) {
        if (startTime(pid) !== st) continue;
        try {
          process.kill(pid, 'SIGKILL');
        } catch {
          // already gone
        }
      }
      rmSync(dir, { recursive: true, force: true });
    },
  };
}
