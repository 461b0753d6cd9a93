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
import { docBlock } from '../helpers/doc-blocks.js';
import { DOVECOT_VERSIONS, requireDovecot, scratchDir, startDovecot } from '../helpers/dovecot.js';
import type { DovecotVersion } from '../helpers/dovecot.js';
import { accessToken, dovecot24OAuth2, startOAuthWorld } from '../helpers/oauth-world.js';
import { randomLoopbackIp, requirePostfix, startPostfix } from '../helpers/postfix.js';

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
  const { tdb, kc, d, listenToken, tokenFile } = await startOAuthWorld(t, { users: ['alice', 'bob', 'frank'], attributes: { frank: { smtp_access: '0' } } });

  const pf = await startPostfix(t, { dir: scratchDir(t, version).host });
  const dv = await startDovecot(t, {
    version,
    cacheSize: '1M',
    cacheTtl: '1 hour',
    lua: { url: d.url, tokenFile, fromDocs: true },
    docs: version === '2.3' ? ['dovecot23-passdb', 'dovecot-2.3-auth', 'dovecot-2.3-postfix'] : ['dovecot-2.4-auth', 'dovecot-2.4-postfix'],
    postfixQueueDir: pf.queueDir,
    extraConfig: version === '2.3' ? docBlock('dovecot23-mechanisms') : dovecot24OAuth2(listenToken, d.url),
  });

  const mechs = await pf.authMechanisms();
  t.ok(mechs.includes('XOAUTH2') && mechs.includes('OAUTHBEARER'), 'Postfix offers XOAUTH2 and OAUTHBEARER once Dovecot does', { mechs });
  for (const mech of ['XOAUTH2', 'OAUTHBEARER'] as const) {
    const ok = await smtpAuthBearer(pf.port, mech, 'alice@example.org', await accessToken(kc, 'alice'));
    t.equal(ok.code, 235, `${mech}: alice's token is accepted for SMTP`, { reply: ok.reply, dovecot: ok.code === 235 ? undefined : dv.log().split('\n').filter((l) => /auth/i.test(l)).slice(-6).join('\n'), postfix: ok.code === 235 ? undefined : pf.log().slice(-1500) });
    const other = await smtpAuthBearer(pf.port, mech, 'bob@example.org', await accessToken(kc, 'alice'));
    t.equal(other.code, 535, `${mech}: alice's token for bob is refused`, { reply: other.reply });
    const frank = await smtpAuthBearer(pf.port, mech, 'frank@example.org', await accessToken(kc, 'frank'));
    t.equal(frank.code, 535, `${mech}: a mailbox with smtp_access off is refused`, { reply: frank.reply });
    const junk = await smtpAuthBearer(pf.port, mech, 'alice@example.org', 'made-up-token');
    t.equal(junk.code, 535, `${mech}: a made-up token is refused`, { reply: junk.reply });
  }
  // The auth cache (1M here): Postfix sends Dovecot no session id, so on 2.3 the documented cache key
  // is per user and token: the same token stays accepted for SMTP after the mailbox is disabled,
  // until auth_cache_ttl (docs/oauth.md says so). 2.4 asks mailauth every time.
  const bobToken = await accessToken(kc, 'bob');
  t.equal((await smtpAuthBearer(pf.port, 'XOAUTH2', 'bob@example.org', bobToken)).code, 235, 'bob, SMTP');
  await tdb.db.exec('UPDATE mailbox SET active = 0 WHERE username = ?', ['bob@example.org']);
  d.forgetIdp();
  const again = await smtpAuthBearer(pf.port, 'XOAUTH2', 'bob@example.org', bobToken);
  if (version === '2.3') t.equal(again.code, 235, '2.3: the same token is answered from the auth cache until auth_cache_ttl (documented)');
  else t.equal(again.code, 535, '2.4: the disabled mailbox is refused at once');
  t.equal((await smtpAuthBearer(pf.port, 'XOAUTH2', 'bob@example.org', await accessToken(kc, 'bob'))).code, 535, 'a new token is decided by mailauth: refused');

  t.notMatch(pf.log() + dv.log(), /eyJ[A-Za-z0-9_-]{20,}\.[A-Za-z0-9_-]{20,}\./, 'no token in the Postfix or Dovecot log');
}

// Two Dovecot versions (and Postfix) in one file: more than tap's default 120 s on a busy machine.
t.setTimeout(400_000);

for (const version of DOVECOT_VERSIONS) {
  t.test(`Dovecot ${version} + Postfix: SMTP AUTH with bearer tokens`, async (t) => {
    if (requireDovecot(t, version) && requirePostfix(t)) await scenario(t, version);
  });
}
