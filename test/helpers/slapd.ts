/**
 * A private OpenLDAP (Debian's slapd) per call: its own temp directory with a
 * slapd.conf (`slapd -f`), an mdb database loaded with `slapadd` from an LDIF
 * this helper writes, the ppolicy overlay (pwdAccountLockedTime, pwdFailureTime,
 * lockout after failed binds), and a test CA + server certificate made with
 * openssl, listening for ldap:// (StartTLS offered) and ldaps:// on loopback
 * ports the OS picked. Stopped (SIGCONT then SIGTERM) in teardown, or by a
 * watchdog when the test process dies without it. Nothing of
 * the system's slapd or /etc/ldap is touched (the schema files are only read).
 *
 * `requireSlapd(t)` fails in CI and skips loudly elsewhere when slapd or
 * openssl is missing.
 */
import { execFile, spawn, spawnSync } from 'node:child_process';
import type { ChildProcess } from 'node:child_process';
import { existsSync, mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { connect } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { freePort } from './dovecot.js';
import { requireTool } from './require-tool.js';
import type { TapLike } from './require-tool.js';

export const SUFFIX = 'dc=example,dc=org';
export const ADMIN_DN = `cn=admin,${SUFFIX}`;
export const ADMIN_PASSWORD = 'admin-secret';
export const SERVICE_DN = `cn=mailauth,ou=services,${SUFFIX}`;
export const SERVICE_PASSWORD = 'service-secret';
export const PEOPLE = `ou=people,${SUFFIX}`;

const SLAPD = '/usr/sbin/slapd';
const SLAPADD = '/usr/sbin/slapadd';
const MODULES = '/usr/lib/ldap';
const SCHEMA = '/etc/ldap/schema';

export function slapdMissing(): string | null {
  for (const f of [SLAPD, SLAPADD, `${MODULES}/back_mdb.so`, `${MODULES}/ppolicy.so`, `${SCHEMA}/inetorgperson.schema`]) {
    if (!existsSync(f)) return `${f} missing (apt-get install slapd)`;
  }
  if (spawnSync('sh', ['-c', 'command -v openssl']).status !== 0) return 'openssl not found (apt-get install openssl)';
  return null;
}

/** Gate a test file: `if (requireSlapd(t)) await main();` — a failure in CI, a loud skip elsewhere. */
export function requireSlapd(t: TapLike): boolean {
  return requireTool(t, 'OpenLDAP', slapdMissing());
}

/** One person in the directory (inetOrgPerson; extensibleObject when extra attributes need it). */
export interface LdapPerson {
  uid: string;
  mail?: string | string[];
  password?: string;
  cn?: string;
  givenName?: string;
  sn?: string;
  /** Under ou=people unless given. */
  ou?: string;
  /** Any other attributes (e.g. the template attribute, userAccountControl, pwdAccountLockedTime). */
  attrs?: Record<string, string | string[]>;
}

export function personDn(p: Pick<LdapPerson, 'uid' | 'ou'>): string {
  return `uid=${p.uid},${p.ou ?? PEOPLE}`;
}

/** Base64 when LDIF needs it (non-ASCII, leading space/colon/<, trailing space). */
function ldifLine(attr: string, value: string): string {
  const safe = /^[\x01-\x09\x0b\x0c\x0e-\x1f\x21-\x39\x3b\x3d-\x7f][\x01-\x09\x0b\x0c\x0e-\x7f]*$/.test(value) && !value.endsWith(' ');
  return safe || value === '' ? `${attr}: ${value}` : `${attr}:: ${Buffer.from(value, 'utf8').toString('base64')}`;
}

export function personLdif(p: LdapPerson): string {
  const lines = [`dn: ${personDn(p)}`, 'objectClass: inetOrgPerson'];
  const extra = p.attrs ?? {};
  if (Object.keys(extra).some((k) => !['employeeType', 'departmentNumber', 'description', 'title', 'o', 'businessCategory'].includes(k) && !k.startsWith('pwd'))) {
    lines.push('objectClass: extensibleObject');
  }
  lines.push(ldifLine('uid', p.uid));
  lines.push(ldifLine('cn', p.cn ?? p.uid));
  lines.push(ldifLine('sn', p.sn ?? p.uid));
  if (p.givenName) lines.push(ldifLine('givenName', p.givenName));
  for (const m of Array.isArray(p.mail) ? p.mail : p.mail === undefined ? [] : [p.mail]) lines.push(ldifLine('mail', m));
  if (p.password !== undefined) lines.push(ldifLine('userPassword', p.password));
  for (const [k, v] of Object.entries(extra)) for (const x of Array.isArray(v) ? v : [v]) lines.push(ldifLine(k, x));
  return lines.join('\n') + '\n';
}

function baseLdif(extraOus: readonly string[]): string {
  const ous = ['people', 'services', 'policies', ...extraOus];
  return (
    [
      `dn: ${SUFFIX}\nobjectClass: dcObject\nobjectClass: organization\no: Example\ndc: example\n`,
      ...ous.map((ou) => `dn: ou=${ou},${SUFFIX}\nobjectClass: organizationalUnit\nou: ${ou}\n`),
      // The service account mailauth binds as (a simpleSecurityObject, not a person: sync must not see it).
      `dn: ${SERVICE_DN}\nobjectClass: organizationalRole\nobjectClass: simpleSecurityObject\ncn: mailauth\nuserPassword: ${SERVICE_PASSWORD}\n`,
      // Lock after 3 failed binds, until an admin unlocks (pwdLockoutDuration 0).
      `dn: cn=default,ou=policies,${SUFFIX}\nobjectClass: pwdPolicy\nobjectClass: person\ncn: default\nsn: policy\npwdAttribute: userPassword\npwdLockout: TRUE\npwdMaxFailure: 3\npwdLockoutDuration: 0\npwdFailureCountInterval: 0\n`,
    ].join('\n') + '\n'
  );
}

export interface TestCa {
  dir: string;
  caFile: string;
  certFile: string;
  keyFile: string;
  caPem: string;
}

function runSync(cmd: string, args: string[], cwd?: string): void {
  const r = spawnSync(cmd, args, { cwd, encoding: 'utf8' });
  if (r.status !== 0) throw new Error(`${cmd} ${args.join(' ')} failed (${r.status}): ${r.stderr}`);
}

/** A self-signed CA and a server certificate for `names` (DNS names and IP addresses), made by openssl. */
export function makeTestCa(dir: string, names: readonly string[] = ['localhost', '127.0.0.1']): TestCa {
  mkdirSync(dir, { recursive: true });
  const caKey = join(dir, 'ca.key');
  const caFile = join(dir, 'ca.pem');
  const keyFile = join(dir, 'server.key');
  const csr = join(dir, 'server.csr');
  const certFile = join(dir, 'server.pem');
  const ext = join(dir, 'ext.cnf');
  const san = names.map((n) => (/^[\d.]+$|:/.test(n) ? `IP:${n}` : `DNS:${n}`)).join(',');
  writeFileSync(ext, `subjectAltName=${san}\nbasicConstraints=CA:FALSE\nkeyUsage=digitalSignature,keyEncipherment\nextendedKeyUsage=serverAuth\n`);
  runSync('openssl', ['req', '-x509', '-newkey', 'rsa:2048', '-nodes', '-keyout', caKey, '-out', caFile, '-days', '2', '-subj', '/CN=mailauth test CA', '-addext', 'basicConstraints=critical,CA:TRUE', '-addext', 'keyUsage=critical,keyCertSign,cRLSign']);
  runSync('openssl', ['req', '-newkey', 'rsa:2048', '-nodes', '-keyout', keyFile, '-out', csr, '-subj', `/CN=${names[0] ?? 'localhost'}`]);
  runSync('openssl', ['x509', '-req', '-in', csr, '-CA', caFile, '-CAkey', caKey, '-CAcreateserial', '-out', certFile, '-days', '2', '-extfile', ext]);
  return { dir, caFile, certFile, keyFile, caPem: readFileSync(caFile, 'utf8') };
}

export interface StartSlapdOptions {
  /** People to load (the service account, policy and OUs are always there). */
  people?: readonly LdapPerson[];
  /** Extra organizational units under the suffix. */
  ous?: readonly string[];
  /** Names on the server certificate (default localhost and 127.0.0.1). */
  certNames?: readonly string[];
}

export interface SlapdInstance {
  host: string;
  /** ldap:// port (StartTLS available). */
  port: number;
  /** ldaps:// port. */
  ldapsPort: number;
  url: string;
  ldapsUrl: string;
  ca: TestCa;
  dir: string;
  pid: number;
  /** ldapmodify as the rootdn (LDIF changes). */
  modify(ldif: string): Promise<void>;
  /** ldapsearch as the rootdn; the LDIF text. */
  search(base: string, filter: string, attrs?: readonly string[]): Promise<string>;
  /** SIGSTOP: connections stay open, nothing is answered. */
  pause(): void;
  resume(): void;
  stop(): Promise<void>;
  /** Start again after stop() on the same ports and data. */
  start(): Promise<void>;
}

function execText(cmd: string, args: string[], input?: string): Promise<string> {
  return new Promise((resolve, reject) => {
    const child = execFile(cmd, args, { encoding: 'utf8', timeout: 30_000, maxBuffer: 64 * 1024 * 1024 }, (err, stdout, stderr) => {
      if (err) reject(new Error(`${cmd} failed: ${stderr || err.message}`));
      else resolve(stdout);
    });
    if (input !== undefined) child.stdin?.end(input);
  });
}

async function waitForPort(port: number, deadline: number): Promise<void> {
  for (;;) {
    const ok = await new Promise<boolean>((resolve) => {
      const s = connect({ host: '127.0.0.1', port }, () => {
        s.destroy();
        resolve(true);
      });
      s.on('error', () => resolve(false));
    });
    if (ok) return;
    if (Date.now() > deadline) throw new Error(`slapd did not listen on 127.0.0.1:${port}`);
    await new Promise((r) => setTimeout(r, 50));
  }
}

export async function startSlapd(t: { teardown(fn: () => unknown): void }, opts: StartSlapdOptions = {}): Promise<SlapdInstance> {
  const dir = mkdtempSync(join(tmpdir(), 'mailauth-slapd-'));
  const dataDir = join(dir, 'data');
  mkdirSync(dataDir);
  const ca = makeTestCa(join(dir, 'tls'), opts.certNames);
  const conf = join(dir, 'slapd.conf');
  // Two Active Directory attributes (their AD OIDs), so AD-style disabled and locked entries can be tested
  // without Debian's msuser.schema (whose user class needs a dozen AD-only attributes).
  const adSchema = join(dir, 'ad-min.schema');
  writeFileSync(
    adSchema,
    [
      "attributetype ( 1.2.840.113556.1.4.8 NAME 'userAccountControl' EQUALITY integerMatch SYNTAX 1.3.6.1.4.1.1466.115.121.1.27 SINGLE-VALUE )",
      "attributetype ( 1.2.840.113556.1.4.662 NAME 'lockoutTime' EQUALITY integerMatch SYNTAX 1.3.6.1.4.1.1466.115.121.1.27 SINGLE-VALUE )",
      "attributetype ( 1.2.840.113556.1.4.656 NAME 'userPrincipalName' EQUALITY caseIgnoreMatch SYNTAX 1.3.6.1.4.1.1466.115.121.1.15 SINGLE-VALUE )",
      "attributetype ( 1.2.840.113556.1.4.221 NAME 'sAMAccountName' EQUALITY caseIgnoreMatch SYNTAX 1.3.6.1.4.1.1466.115.121.1.15 SINGLE-VALUE )",
      '',
    ].join('\n'),
  );
  writeFileSync(
    conf,
    [
      ...['core', 'cosine', 'inetorgperson', 'nis'].map((s) => `include ${SCHEMA}/${s}.schema`),
      `include ${adSchema}`,
      `modulepath ${MODULES}`,
      'moduleload back_mdb',
      'moduleload ppolicy',
      `pidfile ${join(dir, 'slapd.pid')}`,
      `argsfile ${join(dir, 'slapd.args')}`,
      `TLSCACertificateFile ${ca.caFile}`,
      `TLSCertificateFile ${ca.certFile}`,
      `TLSCertificateKeyFile ${ca.keyFile}`,
      'sizelimit unlimited',
      'database mdb',
      'maxsize 1073741824',
      `suffix "${SUFFIX}"`,
      `rootdn "${ADMIN_DN}"`,
      `rootpw ${ADMIN_PASSWORD}`,
      `directory ${dataDir}`,
      'index objectClass eq',
      'index uid,mail eq',
      'overlay ppolicy',
      `ppolicy_default "cn=default,ou=policies,${SUFFIX}"`,
      'ppolicy_use_lockout',
      'access to attrs=userPassword by self write by anonymous auth by * none',
      'access to * by * read',
      '',
    ].join('\n'),
  );
  const people = opts.people ?? [];
  const ldif = baseLdif(opts.ous ?? []) + '\n' + people.map(personLdif).join('\n');
  const ldifFile = join(dir, 'seed.ldif');
  writeFileSync(ldifFile, ldif);
  // -q: no index checks, fast bulk load; the overlay's operational attributes are taken as given.
  await execText(SLAPADD, ['-q', '-f', conf, '-l', ldifFile]);

  const [port, ldapsPort] = [await freePort(), await freePort()];
  const url = `ldap://127.0.0.1:${port}`;
  const ldapsUrl = `ldaps://127.0.0.1:${ldapsPort}`;
  let child: ChildProcess | null = null;
  let watchdog: ChildProcess | null = null;
  let paused = false;

  async function start(): Promise<void> {
    // -d 0: stay in the foreground (a child we can signal), log nothing.
    const c = spawn(SLAPD, ['-f', conf, '-h', `${url}/ ${ldapsUrl}/`, '-d', '0'], { stdio: ['ignore', 'ignore', 'pipe'] });
    let stderr = '';
    c.stderr?.on('data', (d: Buffer) => (stderr += d.toString()));
    child = c;
    // A watchdog holding a pipe from this process: if the test process dies without its teardown (a tap
    // timeout kills it), the pipe closes and the watchdog stops slapd, so no server outlives its test.
    const w = spawn('sh', ['-c', `read _; kill -CONT ${c.pid} 2>/dev/null; kill -TERM ${c.pid} 2>/dev/null`], { stdio: ['pipe', 'ignore', 'ignore'] });
    w.unref();
    (w.stdin as unknown as { unref?: () => void } | null)?.unref?.();
    watchdog = w;
    const exited = new Promise<never>((_, reject) => c.once('exit', (code) => reject(new Error(`slapd exited (${code}) before listening: ${stderr}`))));
    exited.catch(() => undefined);
    await Promise.race([Promise.all([waitForPort(port, Date.now() + 10_000), waitForPort(ldapsPort, Date.now() + 10_000)]), exited]);
  }

  async function stop(): Promise<void> {
    const c = child;
    child = null;
    // The watchdog goes first: it must never signal a process id that slapd no longer owns.
    watchdog?.kill('SIGKILL');
    watchdog = null;
    if (!c || c.exitCode !== null) return;
    if (paused) {
      c.kill('SIGCONT');
      paused = false;
    }
    const gone = new Promise<void>((resolve) => c.once('exit', () => resolve()));
    c.kill('SIGTERM');
    const timer = setTimeout(() => c.kill('SIGKILL'), 5_000);
    await gone;
    clearTimeout(timer);
  }

  await start();
  t.teardown(async () => {
    await stop();
    rmSync(dir, { recursive: true, force: true });
  });

  const adminArgs = ['-x', '-H', url, '-D', ADMIN_DN, '-w', ADMIN_PASSWORD];
  return {
    host: '127.0.0.1',
    port,
    ldapsPort,
    url,
    ldapsUrl,
    ca,
    dir,
    get pid() {
      return child?.pid ?? 0;
    },
    modify: async (text) => {
      await execText('ldapmodify', [...adminArgs], text);
    },
    search: (base, filter, attrs = []) => execText('ldapsearch', [...adminArgs, '-LLL', '-o', 'ldif-wrap=no', '-b', base, filter, ...attrs]),
    pause() {
      if (child && !paused) {
        child.kill('SIGSTOP');
        paused = true;
      }
    },
    resume() {
      if (child && paused) {
        child.kill('SIGCONT');
        paused = false;
      }
    },
    stop,
    start,
  };
}

/** `n` generated people user0000…, with mail userNNNN@domain and password `pw-NNNN`. */
export function bulkPeople(n: number, domain: string, over: (i: number) => Partial<LdapPerson> = () => ({})): LdapPerson[] {
  const width = Math.max(4, String(n - 1).length);
  return Array.from({ length: n }, (_, i) => {
    const id = String(i).padStart(width, '0');
    return { uid: `user${id}`, mail: `user${id}@${domain}`, password: `pw-${id}`, givenName: 'User', sn: id, ...over(i) };
  });
}
