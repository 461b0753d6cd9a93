/**
 * Issue 7 end to end: generic-oidc mailboxes through the daemon over HTTP.
 * Default: app passwords only, with the reason in the answer and the log.
 * auth.oidc_password_grant: the password is checked by a real OpenID
 * provider (panva oidc-provider, test/helpers/oidc-op.ts) with the password grant.
 */
import t from 'tap';
import { writeIdpSettings } from '../../src/db/index.js';
import { hash } from '../../src/passwords/index.js';
import { createTestDatabase, seedDomain, seedMailbox } from '../helpers/db.js';
import type { TestDatabase } from '../helpers/db.js';
import { setOidcIdp, startIdpDaemon } from '../helpers/idp-login.js';
import { startOidcOp } from '../helpers/oidc-op.js';
import type { OidcOp } from '../helpers/oidc-op.js';

interface Teardown {
  teardown(fn: () => unknown): void;
}

async function setup(t: Teardown): Promise<{ tdb: TestDatabase; op: OidcOp }> {
  const tdb = await createTestDatabase(t);
  await seedDomain(tdb, 'example.org');
  await seedMailbox(tdb, 'alice@example.org', '', { authsource: 'generic-oidc' });
  await tdb.db.exec('INSERT INTO app_passwd (name, mailbox, domain, password, active) VALUES (?, ?, ?, ?, 1)', ['laptop', 'alice@example.org', 'example.org', await hash('SSHA256', 'app-secret')]);
  const op = await startOidcOp();
  t.teardown(() => op.close());
  await setOidcIdp(tdb, op, { login_provisioning: '1' });
  return { tdb, op };
}

t.test('app passwords only by default; the account password is refused with a reason', async (t) => {
  const { tdb } = await setup(t);
  const d = await startIdpDaemon(t, tdb);
  t.match(await d.passdb('alice@example.org', 'app-secret'), { result: 'ok', user: 'alice@example.org', reason: /app password/ });
  const r = await d.passdb('alice@example.org', 'pw-alice');
  t.same(r, { result: 'password_mismatch', reason: 'generic-oidc mailboxes log in with app passwords only (auth.oidc_password_grant is off)' });
  t.ok(
    d.logs.some((l) => l.msg === 'passdb decision' && l.result === 'password_mismatch' && String(l.reason).includes('app passwords only')),
    'the reason is in the log line of the decision',
  );
  t.notMatch(d.logText(), /pw-alice|app-secret/);
});

t.test('auth.oidc_password_grant: the provider checks the password', async (t) => {
  const { tdb, op } = await setup(t);
  const d = await startIdpDaemon(t, tdb, { auth: { oidc_password_grant: true }, cache: { idp_ttl: '0s' }, idp: { cooldown: '0s', retries: 0, timeout: '2s' } });
  t.match(await d.passdb('alice@example.org', 'app-secret'), { result: 'ok', reason: /app password/ }, 'app passwords still first');
  t.same(await d.passdb('alice@example.org', 'pw-alice'), { result: 'ok', user: 'alice@example.org', reason: 'generic-oidc password grant' });
  t.match(await d.passdb('alice@example.org', 'wrong'), { result: 'password_mismatch', reason: /refused the credentials/ });
  t.match(await d.metrics(), /mailauth_idp_calls_total\{idp="generic-oidc",operation="password_grant",outcome="ok"\} [1-9]/);

  await op.close();
  t.match(await d.passdb('alice@example.org', 'pw-alice'), { result: 'ok', reason: /stale answer/ }, 'provider down: a password accepted within cache.idp_stale_for still works');
  t.match(await d.passdb('alice@example.org', 'other'), { result: 'internal_failure', reason: /identity provider unavailable/ }, 'provider down: any other password is undecided, not wrong');
  d.daemon.idp.runtime.caches.grant.clear();
  t.match(await d.passdb('alice@example.org', 'pw-alice'), { result: 'internal_failure' }, 'provider down, nothing cached: internal_failure');
  t.notMatch(d.logText(), /pw-alice|app-secret/, 'no password in the log');
});

t.test('the IdP is keycloak, the mailbox says generic-oidc: app passwords only, with a reason', async (t) => {
  const { tdb } = await setup(t);
  await tdb.db.exec("UPDATE identity_provider SET `value` = 'keycloak' WHERE `key` = 'authsource'");
  await writeIdpSettings(tdb.db, { server_url: 'http://127.0.0.1:9', realm: 'mail', client_id: 'x', client_secret: 'y' });
  const d = await startIdpDaemon(t, tdb, { auth: { oidc_password_grant: true } });
  t.match(await d.passdb('alice@example.org', 'pw-alice'), { result: 'password_mismatch', reason: /identity provider is keycloak, not generic-oidc/ });
});
