/**
 * Issue 20 end to end: IMAP `AUTHENTICATE XOAUTH2` and `AUTHENTICATE OAUTHBEARER`
 * through a private Dovecot in front of the real mailauth daemon, with access
 * tokens from the Keycloak double (RS256, JWKS, introspection) and a real
 * MariaDB database.
 *
 * - Dovecot 2.3: the mechanisms hand the token to lua/mailauth.lua as the
 *   password (req.mech set); mailauth checks the token and the mailbox.
 * - Dovecot 2.4: the mechanisms go to Dovecot's own oauth2 settings only;
 *   they call mailauth's RFC 7662 endpoint (POST /v1/oauth2/introspect), with
 *   the listen token as the Basic-auth password of introspection_url.
 *
 * The configuration blocks are the ones docs/oauth.md shows (read from there by
 * test/helpers/doc-blocks.ts, so the documented setup is the tested one).
 */
import { connect } from 'node:net';
import t from 'tap';
import type { Test } from 'tap';
import { chmodSync, copyFileSync } from 'node:fs';
import { join } from 'node:path';
import { DOVECOT_VERSIONS, LUA_SCRIPT, randomClientIp, requireDovecot, scratchDir, startDovecot } from '../helpers/dovecot.js';
import type { DovecotInstance, DovecotVersion } from '../helpers/dovecot.js';
import { docBlock } from '../helpers/doc-blocks.js';
import { accessToken, dovecot24OAuth2, startOAuthWorld } from '../helpers/oauth-world.js';
import type { OAuthWorld } from '../helpers/oauth-world.js';

function saslInitial(mech: 'XOAUTH2' | 'OAUTHBEARER', user: string, tok: string, port: number): string {
  const raw = mech === 'XOAUTH2' ? `user=${user}\x01auth=Bearer ${tok}\x01\x01` : `n,a=${user},\x01host=127.0.0.1\x01port=${port}\x01auth=Bearer ${tok}\x01\x01`;
  return Buffer.from(raw, 'utf8').toString('base64');
}

/**
 * `AUTHENTICATE <mech> <initial response>` (SASL-IR). On a refused token Dovecot sends the
 * mechanism's JSON error as a continuation; the client answers with an empty line (XOAUTH2) or
 * ^A (OAUTHBEARER, RFC 7628) and gets the tagged NO. Returns the tagged line.
 */
async function imapAuthenticate(port: number, mech: 'XOAUTH2' | 'OAUTHBEARER', user: string, tok: string): Promise<{ line: string; challenge: string | null }> {
  const sock = connect({ host: '127.0.0.1', port });
  sock.setEncoding('utf8');
  let buf = '';
  let challenge: string | null = null;
  const lines: string[] = [];
  let wake: (() => void) | null = null;
  sock.on('data', (c: string) => {
    buf += c;
    let i: number;
    while ((i = buf.indexOf('\r\n')) >= 0) {
      lines.push(buf.slice(0, i));
      buf = buf.slice(i + 2);
    }
    wake?.();
  });
  const closed = new Promise<void>((r) => sock.on('close', () => r()));
  sock.on('error', () => {});
  const next = async (re: RegExp): Promise<string> => {
    const deadline = Date.now() + 20_000;
    for (;;) {
      const at = lines.findIndex((l) => re.test(l));
      if (at >= 0) return lines.splice(0, at + 1)[at] as string;
      if (Date.now() > deadline) throw new Error(`timeout waiting for ${re}; got ${JSON.stringify(lines)}`);
      await Promise.race([new Promise<void>((r) => (wake = r)), new Promise((r) => setTimeout(r, 200)), closed]);
    }
  };
  try {
    await next(/^\* OK/);
    sock.write(`i ID ("x-originating-ip" "${randomClientIp()}")\r\n`);
    await next(/^i /);
    sock.write(`a AUTHENTICATE ${mech} ${saslInitial(mech, user, tok, port)}\r\n`);
    const first = await next(/^(a |\+ )/);
    if (first.startsWith('+ ')) {
      challenge = Buffer.from(first.slice(2), 'base64').toString('utf8');
      sock.write(mech === 'OAUTHBEARER' ? `${Buffer.from('\x01').toString('base64')}\r\n` : '\r\n');
      return { line: await next(/^a /), challenge };
    }
    return { line: first, challenge };
  } finally {
    sock.destroy();
  }
}

const OK = /^a OK /;
const NO = /^a NO \[AUTHENTICATIONFAILED\]/;
const UNAVAILABLE = /^a NO \[UNAVAILABLE\]/;

async function dovecotFor(t: Test, w: OAuthWorld, version: DovecotVersion): Promise<DovecotInstance> {
  // The auth cache is on: the documented settings must keep a token login from being answered by it.
  const common = { version, lua: { url: w.d.url, tokenFile: w.tokenFile }, cacheSize: '1M', cacheTtl: '1 hour' };
  if (version === '2.3') {
    const scratch = scratchDir(t, '2.3');
    const script = join(scratch.host, 'mailauth.lua');
    copyFileSync(LUA_SCRIPT, script);
    chmodSync(script, 0o644);
    return startDovecot(t, {
      ...common,
      passdbBefore: docBlock('dovecot23-passdb').replace('/usr/share/mailauth/mailauth.lua', scratch.inside + '/mailauth.lua'),
      extraConfig: docBlock('dovecot23-mechanisms'),
    });
  }
  return startDovecot(t, { ...common, extraConfig: dovecot24OAuth2(w.listenToken, w.d.url) });
}

// Two Dovecot versions (and Postfix) in one file: more than tap's default 120 s on a busy machine.
t.setTimeout(400_000);

for (const version of DOVECOT_VERSIONS) {
  t.test(`Dovecot ${version}: XOAUTH2 and OAUTHBEARER`, async (t) => {
    if (!requireDovecot(t, version)) return;
    const w = await startOAuthWorld(t, { users: ['alice', 'bob', 'dave'], attributes: { dave: { imap_access: '0' } }, daemon: { log: { level: 'info' } } });
    const dv = await dovecotFor(t, w, version);
    for (const mech of ['XOAUTH2', 'OAUTHBEARER'] as const) {
      const alice = await accessToken(w.kc, 'alice');
      const ok = await imapAuthenticate(dv.imapPort, mech, 'alice@example.org', alice);
      t.match(ok.line, OK, `${mech}: alice's token logs alice in`, { dovecotLog: dv.log().slice(-4000), mailauthLog: w.d.logText().slice(-3000) });

      const mixed = await imapAuthenticate(dv.imapPort, mech, 'Alice@Example.ORG', alice);
      t.match(mixed.line, OK, `${mech}: the login name in another case`, { dovecotLog: dv.log().split('\n').filter((l) => /oauth|mismatch/i.test(l)).slice(-4).join('\n') });

      const other = await imapAuthenticate(dv.imapPort, mech, 'bob@example.org', alice);
      t.match(other.line, NO, `${mech}: alice's token does not open bob's mailbox`);
      if (version === '2.3') {
        t.match(other.challenge ?? '', mech === 'XOAUTH2' ? /"status":"401"/ : /invalid_token/, `${mech}: with the mechanism's error challenge`);
      } else {
        // 2.4.1 answers a refused token with the tagged NO at once (no JSON error challenge).
        t.equal(other.challenge, null, `${mech}: 2.4 sends no error challenge`);
      }

      const noScope = await imapAuthenticate(dv.imapPort, mech, 'alice@example.org', await accessToken(w.kc, 'alice', { scope: 'openid' }));
      t.match(noScope.line, NO, `${mech}: a token without the mail scope is refused`);

      w.kc.config.clockSkewSec = -3600;
      const expired = await imapAuthenticate(dv.imapPort, mech, 'alice@example.org', await accessToken(w.kc, 'alice'));
      w.kc.config.clockSkewSec = 0;
      t.match(expired.line, NO, `${mech}: an expired token is refused`);

      const dave = await imapAuthenticate(dv.imapPort, mech, 'dave@example.org', await accessToken(w.kc, 'dave'));
      t.match(dave.line, NO, `${mech}: a mailbox without IMAP access is refused`);

      const garbage = await imapAuthenticate(dv.imapPort, mech, 'alice@example.org', 'not-a-token-at-all');
      t.match(garbage.line, NO, `${mech}: a made-up token is refused`);
    }

    // The auth cache must not answer a token login: disable the mailbox, the same token fails at once.
    const again = await accessToken(w.kc, 'bob');
    t.match((await imapAuthenticate(dv.imapPort, 'XOAUTH2', 'bob@example.org', again)).line, OK, 'bob logs in (cache on)');
    await w.tdb.db.exec('UPDATE mailbox SET active = 0 WHERE username = ?', ['bob@example.org']);
    w.d.forgetIdp();
    t.match((await imapAuthenticate(dv.imapPort, 'XOAUTH2', 'bob@example.org', again)).line, NO, 'mailbox disabled: the same token is refused at once, not served from the auth cache');
    await w.tdb.db.exec('UPDATE mailbox SET active = 1 WHERE username = ?', ['bob@example.org']);

    // The IdP unreachable while a token needs it (a JWT is checked against the kept JWKS; an opaque
    // token needs introspection): mailauth answers internal_failure (2.3) / HTTP 503 (2.4).
    w.kc.inject('*', { kind: 'reset' });
    const down = await imapAuthenticate(dv.imapPort, 'XOAUTH2', 'alice@example.org', 'opaque-token-needs-introspection');
    w.kc.clearFaults();
    if (version === '2.3') {
      t.match(down.line, UNAVAILABLE, 'IdP down: [UNAVAILABLE], a temporary failure');
    } else {
      // Dovecot 2.4.1 logs the 503 as an internal failure but tells the client AUTHENTICATIONFAILED.
      t.match(down.line, NO, 'IdP down: 2.4.1 answers NO [AUTHENTICATIONFAILED] (Dovecot\'s mapping)');
      t.match(await dv.waitForLog(/Error: .*oauth2 failed: Introspection failed: 503/), /Error: .*oauth2 failed: Introspection failed: 503/, 'and logs it as an error, not a wrong token');
    }

    const jwt = /eyJ[A-Za-z0-9_-]{20,}\.[A-Za-z0-9_-]{20,}\.[A-Za-z0-9_-]{20,}/;
    t.notOk(jwt.test(w.d.logText()), "no JWT in mailauth's log");
    t.notOk(jwt.test(dv.log()), "no JWT in Dovecot's log");
  });
}
