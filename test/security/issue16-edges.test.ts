/**
 * Issue 16, the edges: a password that is not UTF-8 is verified as its bytes
 * (password_b64), never `ok` with other bytes; remote_ip must parse as an IP
 * (else stored empty); internal faults reach the caller as a generic reason;
 * Node's own refusals (no Host, an unsupported Expect) are JSON.
 */
import { createHash, randomBytes } from 'node:crypto';
import { readFileSync } from 'node:fs';
import t from 'tap';
import { createTestDatabase, seedDomain, seedMailbox } from '../helpers/db.js';
import { startMailauth } from '../helpers/mailauth-daemon.js';
import { http11, raw } from '../helpers/raw-http.js';

const LATIN1 = Buffer.from('pässwörd', 'latin1'); // ä = 0xE4, ö = 0xF6: not valid UTF-8

function ssha256(bytes: Buffer): string {
  const salt = randomBytes(8);
  return `{SSHA256}${Buffer.concat([createHash('sha256').update(bytes).update(salt).digest(), salt]).toString('base64')}`;
}

t.test('issue 16 edges', async (t) => {
  const tdb = await createTestDatabase(t);
  await seedDomain(tdb, 'example.org');
  await seedMailbox(tdb, 'latin@example.org', ssha256(LATIN1));
  await seedMailbox(tdb, 'nosuch@example.org', '{NOSUCH}abcdef');
  const m = await startMailauth(t, tdb);
  const token = readFileSync(m.tokenFile as string, 'utf8').trim();
  const post = async (body: unknown): Promise<{ status: number; json: Record<string, unknown> }> => {
    const res = await fetch(`${m.url}/v1/passdb`, { method: 'POST', headers: { 'content-type': 'application/json', 'x-mailauth-token': token }, body: JSON.stringify(body) });
    return { status: res.status, json: (await res.json()) as Record<string, unknown> };
  };

  await t.test('a Latin-1 password as password_b64 verifies as its exact bytes', async (t) => {
    const base = { user: 'latin@example.org', service: 'imap', remote_ip: '192.0.2.1' };
    t.match(await post({ ...base, password: '', password_b64: LATIN1.toString('base64') }), { status: 200, json: { result: 'ok' } });
    t.match(await post({ ...base, password: 'pässwörd' }), { json: { result: 'password_mismatch' } }, 'the UTF-8 spelling is other bytes');
    t.match(await post({ ...base, password: '', password_b64: Buffer.from('pässwörd', 'utf8').toString('base64') }), { json: { result: 'password_mismatch' } });
    t.match(await post({ ...base, password: 'x', password_b64: 'not base64!' }), { status: 400, json: { error: 'bad_request' } });
    t.match(await post({ ...base, password: 'x', password_b64: '' }), { json: { result: 'password_mismatch', reason: 'empty password' } });
  });

  await t.test('internal faults give the caller a generic reason', async (t) => {
    const r = await post({ user: 'nosuch@example.org', password: 'whatever', service: 'imap' });
    t.same(r.json, { result: 'internal_failure', reason: 'internal error' });
    t.notMatch(JSON.stringify(r.json), /NOSUCH|scheme/);
  });

  await t.test('remote_ip must be an IP address, else it is stored empty', async (t) => {
    const r = await post({ user: 'latin@example.org', password: '', password_b64: LATIN1.toString('base64'), service: 'imap', remote_ip: "1.2.3.4'); DROP TABLE x; --" });
    t.match(r.json, { result: 'ok' });
    const r2 = await post({ user: 'latin@example.org', password: '', password_b64: LATIN1.toString('base64'), service: 'imap', remote_ip: '2001:db8::7' });
    t.match(r2.json, { result: 'ok' });
    await m.loginLog.flush();
    const rows = await tdb.sql<{ real_rip: string }>("SELECT real_rip FROM sasl_log WHERE username = 'latin@example.org'");
    t.ok(rows.every((row) => row.real_rip === '' || row.real_rip === '2001:db8::7' || row.real_rip === '192.0.2.1'), `stored: ${JSON.stringify(rows)}`);
    t.notOk(rows.some((row) => row.real_rip.includes('DROP')), 'the non-address was not stored');
  });

  await t.test("Node's own refusals are JSON", async (t) => {
    const noHost = await raw(m.url, 'GET /healthz HTTP/1.1\r\n\r\n');
    t.match(noHost.text, /^HTTP\/1\.1 400 [\s\S]*application\/json[\s\S]*\{"error":"bad_request"/);
    const expect = await raw(m.url, http11('POST', '/v1/passdb', ['Host: x', 'Content-Type: application/json', 'Expect: something-else', 'Content-Length: 2'], '{}'));
    t.match(expect.text, /^HTTP\/1\.1 417 [\s\S]*application\/json[\s\S]*"error":"expectation_failed"/);
  });
});
