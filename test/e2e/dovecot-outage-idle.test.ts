/**
 * The outage promise on a quiet server, on Dovecot 2.3 and 2.4. Dovecot's master
 * stops an auth process that has had no clients for a while (idle_kill /
 * idle_kill_interval, 1 minute by default; the kill lands 1–2 intervals after the
 * process went idle), and the auth cache lives in that process. Per version, two
 * instances behind the real mailauth: one with Dovecot's defaults (the control:
 * its auth process must really be killed, or this test proves nothing), one with
 * docs/dovecot.md's configuration block, which has the idle-kill setting. Both sit idle until the control's
 * auth process is gone (> 1 minute); then mailauth stops. The configured one still
 * lets the cached user in on IMAP, POP3 and ManageSieve from expired entries, and
 * gives a new user a temporary failure on all three; the control has lost its cache.
 * Both versions wait side by side, so the file costs one idle period (~1–2.5 min).
 */
import { readFileSync } from 'node:fs';
import t from 'tap';
import type { Test } from 'tap';
import { createTestDatabase } from '../helpers/db.js';
import type { TestDatabase } from '../helpers/db.js';
import { DOVECOT_VERSIONS, requireDovecot, startDovecot } from '../helpers/dovecot.js';
import type { DovecotVersion } from '../helpers/dovecot.js';
import { PASSWORDS, seedDovecotWorld, startMailauth } from '../helpers/mailauth-daemon.js';

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));
/** Longest a default auth process may sit idle before we call the control broken (2 × 60 s intervals + slack). */
const IDLE_LIMIT_MS = 200_000;

async function scenario(t: Test, tdb: TestDatabase, version: DovecotVersion): Promise<void> {
  const mailauth = await startMailauth(t, tdb);
  const base = {
    version,
    lua: { url: mailauth.url, tokenFile: mailauth.tokenFile ?? '' },
    pop3: true,
    managesieve: true,
    cacheSize: '1M',
    cacheTtl: '2 secs',
    cacheNegativeTtl: '2 secs',
  };
  const [control, kept] = await Promise.all([
    // The helper's own config: the auth cache on, Dovecot's default idle kill.
    startDovecot(t, base),
    // docs/dovecot.md's block, idle-kill setting included (TTLs shortened after it).
    startDovecot(t, { ...base, docs: [`dovecot-${version}-auth`] }),
  ]);
  t.match(kept.log() + readFileSync(kept.configPath, 'utf8'), version === '2.3' ? /idle_kill = 4294967295 secs/ : /idle_kill_interval = infinite/, `${version}: the docs block sets the idle kill`);
  for (const dv of [control, kept]) {
    t.match(await dv.imapLogin('alice@example.org', PASSWORDS.alice), /^l OK/, `${version}: alice logs in over IMAP while mailauth is up`);
    t.match(await dv.pop3Login('alice@example.org', PASSWORDS.alice), /^\+OK/, `${version}: and POP3`);
    t.match(await dv.sieveLogin('alice@example.org', PASSWORDS.alice), /^OK/, `${version}: and ManageSieve`);
  }
  const controlAuth = control.authPid();
  const keptAuth = kept.authPid();
  t.ok(controlAuth && keptAuth, `${version}: both auth processes found`, { control: control.processes(), kept: kept.processes() });

  // Nobody talks to either Dovecot now; watch the control's auth process from /proc.
  const idleSince = Date.now();
  // Wait for the control's auth process to be stopped, and in any case past a full minute.
  let killedAfterMs = 0;
  while (controlAuth !== null && Date.now() - idleSince < IDLE_LIMIT_MS) {
    if (!killedAfterMs && control.authPid() !== controlAuth) killedAfterMs = Date.now() - idleSince;
    if (killedAfterMs && Date.now() - idleSince > 61_000) break;
    await sleep(1000);
  }
  const idleMs = Date.now() - idleSince;
  t.ok(killedAfterMs > 0, `${version}: with Dovecot's defaults the idle auth process was stopped (after ${Math.round(killedAfterMs / 1000)} s)`);
  t.ok(idleMs > 60_000, `${version}: the auth processes sat idle for more than a minute (${Math.round(idleMs / 1000)} s)`);
  t.equal(kept.authPid(), keptAuth, `${version}: with the idle-kill setting the auth process (and its cache) is still the same`);

  await mailauth.stop();
  t.match(await kept.imapLogin('alice@example.org', PASSWORDS.alice), /^l OK/, `${version}: outage: the cached user gets in over IMAP`);
  t.match(await kept.pop3Login('alice@example.org', PASSWORDS.alice), /^\+OK Logged in\./, `${version}: outage: and POP3`);
  t.match(await kept.sieveLogin('alice@example.org', PASSWORDS.alice), /^OK/, `${version}: outage: and ManageSieve`);
  t.match(kept.log(), /Falling back to expired data from cache/, `${version}: from expired cache entries`);
  t.match(await kept.imapLogin('erin@example.org', PASSWORDS.erin), /^l NO \[UNAVAILABLE\] Temporary authentication failure\./, `${version}: outage: a new user gets [UNAVAILABLE] on IMAP`);
  t.match(await kept.pop3Login('erin@example.org', PASSWORDS.erin), /^-ERR \[SYS\/TEMP\] Temporary authentication failure\./, `${version}: -ERR [SYS/TEMP] on POP3`);
  t.match(await kept.sieveLogin('erin@example.org', PASSWORDS.erin), /^NO \(TRYLATER\) "Temporary authentication failure\./, `${version}: NO (TRYLATER) on ManageSieve`);
  t.match(await control.imapLogin('alice@example.org', PASSWORDS.alice), /^l NO \[UNAVAILABLE\]/, `${version}: without the setting the cached user is locked out ([UNAVAILABLE])`);
}

t.setTimeout(6 * 60_000);
const tdb = await createTestDatabase(t);
await seedDovecotWorld(tdb);
// jobs: 2 runs the two versions side by side, so the file waits through one idle period, not two.
await t.test('a cached user gets in after the auth process sat idle for over a minute', { jobs: 2 }, async (t) => {
  await Promise.all(
    DOVECOT_VERSIONS.map((version) =>
      t.test(`Dovecot ${version}`, async (t) => {
        if (requireDovecot(t, version)) await scenario(t, tdb, version);
      }),
    ),
  );
});
