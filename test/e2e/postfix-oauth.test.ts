/**
 * Issue 20: SMTP AUTH XOAUTH2 / OAUTHBEARER through a real Postfix
 * (test/helpers/postfix.ts, Dovecot SASL), on Dovecot 2.3 (Lua passdb) and 2.4
 * (oauth2 settings → mailauth's introspection), with access tokens from the
 * Keycloak double. Postfix offers what Dovecot offers; the raw client below
 * speaks STARTTLS and AUTH with an initial response (swaks has no XOAUTH2).
 */
import { connect } from 'node:net';
import type { Socket } from 'node:net';
import { connect as tlsConnect } from 'node:tls';
import t from 'tap';
import type { Test } from 'tap';
import { createTestDatabase, seedDomain, seedMailbox } from '../helpers/db.js';
import { docBlock } from '../helpers/doc-blocks.js';
import { DOVECOT_VERSIONS, requireDovecot, scratchDir, startDovecot } from '../helpers/dovecot.js';
import type { DovecotVersion } from '../helpers/dovecot.js';
import { seedTemplates, setKeycloakIdp, startIdpDaemon } from '../helpers/idp-login.js';
import { startKeycloakDouble } from '../helpers/keycloak-double.js';
import type { KeycloakDouble } from '../helpers/keycloak-double.js';
import { randomLoopbackIp, requirePostfix, startPostfix } from '../helpers/postfix.js';

const USERS = ['alice', 'bob', 'frank'].map((u) => ({ username: u, email: `${u}@example.org`, enabled: true, emailVerified: true, password: `pw-${u}` }));

async function token(kc: KeycloakDouble, user: string): Promise<string> {
  const res = await fetch(`${kc.serverUrl}/realms/${kc.realm}/protocol/openid-connect/token`, {
    method: 'POST',
    headers: { 'content-type': 'application/x-www-form-urlencoded' },
    body: new URLSearchParams({ grant_type: 'password', client_id: 'thunderbird', username: user, password: `pw-${user}`, scope: 'openid mail' }).toString(),
  });
  const body = (await res.json()) as { access_token?: string };
  if (!body.access_token) throw new Error(`token: ${JSON.stringify(body)}`);
  return body.access_token;
}

/** A line-based SMTP dialogue over a socket that can be swapped for its TLS wrapper. */
function smtpLines(initial: Socket) {
  let sock: Socket = initial;
  let buf = '';
  const replies: string[][] = [];
  let current: string[] = [];
  let wake: (() => void) | null = null;
  const onData = (c: Buffer | string): void => {
    buf += c.toString();
    let i: number;
    while ((i = buf.indexOf('\r\n')) >= 0) {
      const line = buf.slice(0, i);
      buf = buf.slice(i + 2);
      current.push(line);
      if (/^\d{3} /.test(line)) {
        replies.push(current);
        current = [];
      }
    }
    wake?.();
  };
  sock.on('data', onData);
  sock.on('error', () => {});
  return {
    async reply(): Promise<string[]> {
      const deadline = Date.now() + 20_000;
      while (replies.length === 0) {
        if (Date.now() > deadline) throw new Error(`SMTP: no reply; got ${JSON.stringify(current)}`);
        await Promise.race([new Promise<void>((r) => (wake = r)), new Promise((r) => setTimeout(r, 200))]);
      }
      return replies.shift() as string[];
    },
    send(line: string): void {
      sock.write(`${line}\r\n`);
    },
    async startTls(): Promise<void> {
      sock.off('data', onData);
      const tls = tlsConnect({ socket: sock, rejectUnauthorized: false });
      await new Promise<void>((resolve, reject) => {
        tls.once('secureConnect', () => resolve());
        tls.once('error', reject);
      });
      tls.on('data', onData);
      tls.on('error', () => {});
      sock = tls;
    },
    close(): void {
      sock.destroy();
    },
  };
}

/** EHLO, STARTTLS, EHLO, AUTH <mech> <initial response>; answers the error challenge; returns the final reply line. */
async function smtpAuthBearer(port: number, mech: 'XOAUTH2' | 'OAUTHBEARER', user: string, tok: string): Promise<{ code: number; reply: string; mechanisms: string[] }> {
  const s = smtpLines(connect({ host: '127.0.0.1', port, localAddress: randomLoopbackIp() }));
  try {
    await s.reply();
    s.send('EHLO client.example');
    await s.reply();
    s.send('STARTTLS');
    await s.reply();
    await s.startTls();
    s.send('EHLO client.example');
    const ehlo = await s.reply();
    const mechanisms = (ehlo.find((l) => /^250[ -]AUTH /i.test(l)) ?? '').replace(/^250[ -]AUTH /i, '').split(' ').filter(Boolean);
    const raw = mech === 'XOAUTH2' ? `user=${user}\x01auth=Bearer ${tok}\x01\x01` : `n,a=${user},\x01host=127.0.0.1\x01port=${port}\x01auth=Bearer ${tok}\x01\x01`;
    s.send(`AUTH ${mech} ${Buffer.from(raw).toString('base64')}`);
    let r = await s.reply();
    if ((r.at(-1) ?? '').startsWith('334')) {
      // The mechanism's JSON error challenge: the client ends the exchange (RFC 7628 / XOAUTH2).
      s.send(mech === 'OAUTHBEARER' ? Buffer.from('\x01').toString('base64') : '');
      r = await s.reply();
    }
    const reply = r.at(-1) ?? '';
    s.send('QUIT');
    return { code: Number(reply.slice(0, 3)), reply, mechanisms };
  } finally {
    s.close();
  }
}

async function scenario(t: Test, version: DovecotVersion): Promise<void> {
  const tdb = await createTestDatabase(t);
  await seedDomain(tdb, 'example.org');
  await seedTemplates(tdb);
  await seedMailbox(tdb, 'alice@example.org', '', { authsource: 'keycloak' });
  await seedMailbox(tdb, 'bob@example.org', '', { authsource: 'keycloak' });
  await seedMailbox(tdb, 'frank@example.org', '', { authsource: 'keycloak', attributes: { smtp_access: '0' } });
  const kc = await startKeycloakDouble({
    users: USERS,
    clients: [
      { clientId: 'mailauth', secret: 'kc-secret', serviceAccountsEnabled: true, directAccessGrantsEnabled: true, adminRoles: ['view-users', 'query-users'] },
      { clientId: 'thunderbird', publicClient: true, directAccessGrantsEnabled: true, adminRoles: [], optionalScopes: ['mail'], audience: ['mail-server'] },
    ],
  });
  t.teardown(() => kc.close());
  await setKeycloakIdp(tdb, kc, { mailpassword_flow: '0', login_provisioning: '0' });
  const { mkdtempSync, writeFileSync, rmSync } = await import('node:fs');
  const { join } = await import('node:path');
  const { tmpdir } = await import('node:os');
  const { randomBytes } = await import('node:crypto');
  const dir = mkdtempSync(join(tmpdir(), 'oauth-smtp-'));
  t.teardown(() => rmSync(dir, { recursive: true, force: true }));
  const listenToken = randomBytes(24).toString('base64url');
  const tokenFile = join(dir, 'token');
  writeFileSync(tokenFile, `${listenToken}\n`, { mode: 0o644 });
  const d = await startIdpDaemon(t, tdb, { listen: { token_file: tokenFile }, oauth: { enabled: true, audiences: ['mail-server'], clients: ['thunderbird'], required_scopes: ['mail'] } });

  const pf = await startPostfix(t, { dir: scratchDir(t, version).host });
  const port = new URL(d.url).port;
  const dv = await startDovecot(t, {
    version,
    cacheSize: '1M',
    cacheTtl: '1 hour',
    lua: { url: d.url, tokenFile, fromDocs: true },
    docs: version === '2.3' ? ['dovecot23-passdb', 'dovecot-2.3-auth', 'dovecot-2.3-postfix'] : ['dovecot-2.4-auth', 'dovecot-2.4-postfix'],
    postfixQueueDir: pf.queueDir,
    extraConfig:
      version === '2.3'
        ? docBlock('dovecot23-mechanisms')
        : docBlock('dovecot24-oauth2').replace('MAILAUTH_LISTEN_TOKEN', listenToken).replace('127.0.0.1:9082', `127.0.0.1:${port}`),
  });

  const mechs = await pf.authMechanisms();
  t.ok(mechs.includes('XOAUTH2') && mechs.includes('OAUTHBEARER'), 'Postfix offers XOAUTH2 and OAUTHBEARER once Dovecot does', { mechs });
  for (const mech of ['XOAUTH2', 'OAUTHBEARER'] as const) {
    const ok = await smtpAuthBearer(pf.port, mech, 'alice@example.org', await token(kc, 'alice'));
    t.equal(ok.code, 235, `${mech}: alice's token is accepted for SMTP`, { reply: ok.reply, dovecot: ok.code === 235 ? undefined : dv.log().split('\n').filter((l) => /auth/i.test(l)).slice(-6).join('\n'), postfix: ok.code === 235 ? undefined : pf.log().slice(-1500) });
    const other = await smtpAuthBearer(pf.port, mech, 'bob@example.org', await token(kc, 'alice'));
    t.equal(other.code, 535, `${mech}: alice's token for bob is refused`, { reply: other.reply });
    const frank = await smtpAuthBearer(pf.port, mech, 'frank@example.org', await token(kc, 'frank'));
    t.equal(frank.code, 535, `${mech}: a mailbox with smtp_access off is refused`, { reply: frank.reply });
    const junk = await smtpAuthBearer(pf.port, mech, 'alice@example.org', 'made-up-token');
    t.equal(junk.code, 535, `${mech}: a made-up token is refused`, { reply: junk.reply });
  }
  // The auth cache (1M here): Postfix sends Dovecot no session id, so on 2.3 the documented cache key
  // is per user and token: the same token stays accepted for SMTP after the mailbox is disabled,
  // until auth_cache_ttl (docs/oauth.md says so). 2.4 asks mailauth every time.
  const bobToken = await token(kc, 'bob');
  t.equal((await smtpAuthBearer(pf.port, 'XOAUTH2', 'bob@example.org', bobToken)).code, 235, 'bob, SMTP');
  await tdb.db.exec('UPDATE mailbox SET active = 0 WHERE username = ?', ['bob@example.org']);
  d.forgetIdp();
  const again = await smtpAuthBearer(pf.port, 'XOAUTH2', 'bob@example.org', bobToken);
  if (version === '2.3') t.equal(again.code, 235, '2.3: the same token is answered from the auth cache until auth_cache_ttl (documented)');
  else t.equal(again.code, 535, '2.4: the disabled mailbox is refused at once');
  t.equal((await smtpAuthBearer(pf.port, 'XOAUTH2', 'bob@example.org', await token(kc, 'bob'))).code, 535, 'a new token is decided by mailauth: refused');

  t.notMatch(pf.log() + dv.log(), /eyJ[A-Za-z0-9_-]{20,}\.[A-Za-z0-9_-]{20,}\./, 'no token in the Postfix or Dovecot log');
}

// Two Dovecot versions (and Postfix) in one file: more than tap's default 120 s on a busy machine.
t.setTimeout(400_000);

for (const version of DOVECOT_VERSIONS) {
  t.test(`Dovecot ${version} + Postfix: SMTP AUTH with bearer tokens`, async (t) => {
    if (requireDovecot(t, version) && requirePostfix(t)) await scenario(t, version);
  });
}
