/**
 * Issue 16: a password that is not valid UTF-8 (Latin-1 "pässwörd", as an old client
 * sends it) through real Dovecot 2.3 and 2.4 and the Lua script: it used to become
 * HTTP 400 → [UNAVAILABLE] plus an error line in Dovecot's log. Now the script sends
 * its bytes as password_b64 and the daemon verifies exactly those bytes.
 */
import { createHash, randomBytes } from 'node:crypto';
import net from 'node:net';
import t from 'tap';
import { createTestDatabase, seedDomain, seedMailbox } from '../helpers/db.js';
import { DOVECOT_VERSIONS, requireDovecot, startDovecot } from '../helpers/dovecot.js';
import { startMailauth } from '../helpers/mailauth-daemon.js';

const LATIN1 = Buffer.from('pässwörd', 'latin1');

function ssha256(bytes: Buffer): string {
  const salt = randomBytes(8);
  return `{SSHA256}${Buffer.concat([createHash('sha256').update(bytes).update(salt).digest(), salt]).toString('base64')}`;
}

/** IMAP AUTHENTICATE PLAIN with the exact bytes (SASL-IR); the tagged answer line. */
function imapPlain(port: number, user: string, password: Buffer): Promise<string> {
  const initial = Buffer.concat([Buffer.from(`\0${user}\0`), password]).toString('base64');
  return new Promise((resolve, reject) => {
    const s = net.connect(port, '127.0.0.1');
    let buf = '';
    let sent = false;
    const timer = setTimeout(() => {
      s.destroy();
      reject(new Error(`no answer: ${buf}`));
    }, 20_000);
    s.on('data', (d: Buffer) => {
      buf += d.toString('latin1');
      if (!sent && /^\* OK/m.test(buf)) {
        sent = true;
        s.write(`a AUTHENTICATE PLAIN ${initial}\r\n`);
      }
      const m = /^a (OK|NO|BAD)[^\r\n]*/m.exec(buf);
      if (m) {
        clearTimeout(timer);
        s.end('z LOGOUT\r\n');
        resolve(m[0]);
      }
    });
    s.on('error', (err) => {
      clearTimeout(timer);
      reject(err);
    });
  });
}

for (const version of DOVECOT_VERSIONS) {
  t.test(`Dovecot ${version}: a Latin-1 password is verified as its bytes`, async (t) => {
    if (!requireDovecot(t, version)) return;
    const tdb = await createTestDatabase(t);
    await seedDomain(tdb, 'example.org');
    await seedMailbox(tdb, 'latin@example.org', ssha256(LATIN1));
    const mailauth = await startMailauth(t, tdb);
    const dv = await startDovecot(t, { version, docs: [`dovecot-${version}-auth`], lua: { url: mailauth.url, tokenFile: mailauth.tokenFile ?? '', fromDocs: true } });
    t.match(await imapPlain(dv.imapPort, 'latin@example.org', LATIN1), /^a OK/, 'the Latin-1 bytes log in');
    t.match(await imapPlain(dv.imapPort, 'latin@example.org', Buffer.from('pässwörd', 'utf8')), /^a NO \[AUTHENTICATIONFAILED\]/, 'the UTF-8 spelling is another password');
    t.match(await imapPlain(dv.imapPort, 'latin@example.org', Buffer.from('p\xe4sswort', 'latin1')), /^a NO \[AUTHENTICATIONFAILED\]/, 'a wrong Latin-1 password is a plain failure, not [UNAVAILABLE]');
    t.notMatch(dv.log(), /answered HTTP 400/, 'no HTTP 400 in Dovecot\'s log');
  });
}
