/** The login log: batched, REPLACE semantics, bounded, flushed on stop, never throwing at logins. */
import t from 'tap';
import { createLoginLog } from '../../src/auth/index.js';
import type { LoginLogConfig } from '../../src/auth/index.js';
import { writeSaslLog } from '../../src/db/index.js';
import type { Queryable, SaslLogEntry } from '../../src/db/index.js';
import { createLogger, silentLogger } from '../../src/logging/index.js';
import { createTestDatabase } from '../helpers/db.js';

const T0 = Date.UTC(2024, 0, 2, 3, 4, 5);
const cfg = (over: Partial<LoginLogConfig> = {}): LoginLogConfig => ({ enabled: true, queueSize: 100, batchSize: 100, flushIntervalMs: 600_000, ...over });
const entry = (i: number, over: Partial<{ service: string; appPassword: number; username: string; realRip: string }> = {}) => ({
  service: 'imap',
  appPassword: 0,
  username: `user${i}@example.org`,
  realRip: '192.0.2.1',
  ...over,
});

interface SaslRow {
  service: string;
  app_password: number;
  username: string;
  real_rip: string;
  datetime: string;
}

async function rows(sql: (q: string) => Promise<SaslRow[]>): Promise<SaslRow[]> {
  return sql('SELECT service, app_password, username, real_rip, datetime FROM sasl_log ORDER BY username, service');
}

const until = async (cond: () => boolean | Promise<boolean>, ms = 3000): Promise<void> => {
  const end = Date.now() + ms;
  while (!(await cond())) {
    if (Date.now() > end) throw new Error('condition not reached');
    await new Promise((r) => setTimeout(r, 10));
  }
};

t.test('writes in batches of batch_size once the queue is half full, not before', async (t) => {
  const tdb = await createTestDatabase(t);
  const batches: number[] = [];
  const write = (q: Queryable, e: readonly SaslLogEntry[]) => (batches.push(e.length), writeSaslLog(q, e));
  const log = createLoginLog({ db: tdb.db, logger: silentLogger(), config: cfg({ batchSize: 3, queueSize: 14 }), clock: { now: () => T0 }, write });
  t.teardown(() => log.stop());
  for (let i = 0; i < 6; i++) log.record(entry(i));
  await new Promise((r) => setTimeout(r, 50));
  t.same(batches, [], 'two batches queued, the queue not yet half full: nothing written before the interval');
  log.record(entry(6));
  t.same(batches, [], 'nothing is written on the request path');
  await until(() => batches.length >= 2);
  await log.flush();
  t.same(batches.slice(0, 2), [3, 3]);
  t.same(batches.reduce((a, b) => a + b, 0), 7);
  const r = await rows(tdb.sql);
  t.equal(r.length, 7);
  t.same(r[0], { service: 'imap', app_password: 0, username: 'user0@example.org', real_rip: '192.0.2.1', datetime: '2024-01-02 03:04:05' }, 'the login time, not the write time');
  t.match(log.stats(), { recorded: 7, written: 7, queued: 0, dropped: 0, writeErrors: 0 });
});

t.test('a batch_size above queue_size still flushes at half the queue, dropping nothing', async (t) => {
  const tdb = await createTestDatabase(t);
  const log = createLoginLog({ db: tdb.db, logger: silentLogger(), config: cfg({ queueSize: 4, batchSize: 100 }) });
  t.teardown(() => log.stop());
  for (let i = 0; i < 3; i++) log.record(entry(i));
  await until(async () => log.stats().written === 3);
  for (let i = 3; i < 6; i++) log.record(entry(i));
  await until(async () => log.stats().written === 6);
  t.match(log.stats(), { recorded: 6, written: 6, dropped: 0 });
  t.equal((await rows(tdb.sql)).length, 6);
});

t.test('the timer flushes a queue smaller than a batch', async (t) => {
  const tdb = await createTestDatabase(t);
  const log = createLoginLog({ db: tdb.db, logger: silentLogger(), config: cfg({ flushIntervalMs: 30 }) });
  t.teardown(() => log.stop());
  log.record(entry(1));
  // Wait on the writer's own count: another connection may see the committed row before the
  // writer's promise has settled, so polling the table first raced with stats().
  await until(async () => log.stats().written === 1);
  t.equal((await rows(tdb.sql)).length, 1);
});

t.test("REPLACE semantics: one row per (service, real_rip, username), the newest wins", async (t) => {
  const tdb = await createTestDatabase(t);
  let now = T0;
  const log = createLoginLog({ db: tdb.db, logger: silentLogger(), config: cfg(), clock: { now: () => now } });
  t.teardown(() => log.stop());
  log.record(entry(1, { appPassword: 5 }));
  now += 1000;
  log.record(entry(1, { appPassword: 0 }));
  log.record(entry(1, { service: 'smtp' }));
  log.record(entry(1, { realRip: '198.51.100.9' }));
  await log.flush();
  t.match(log.stats(), { recorded: 4, written: 3 }, 'repeated logins are coalesced in the queue');
  now += 60_000;
  log.record(entry(1, { appPassword: 7 }));
  await log.flush();
  const r = await rows(tdb.sql);
  t.equal(r.length, 3);
  t.same(
    r.map((x) => [x.service, x.real_rip, x.app_password, x.datetime]),
    [
      ['imap', '192.0.2.1', 7, '2024-01-02 03:05:06'],
      ['imap', '198.51.100.9', 0, '2024-01-02 03:04:06'],
      ['smtp', '192.0.2.1', 0, '2024-01-02 03:04:06'],
    ],
  );
});

t.test('a full queue drops the oldest entries and counts them', async (t) => {
  const tdb = await createTestDatabase(t);
  const log = createLoginLog({ db: tdb.db, logger: silentLogger(), config: cfg({ queueSize: 3 }) });
  t.teardown(() => log.stop());
  for (let i = 0; i < 5; i++) log.record(entry(i));
  t.match(log.stats(), { queued: 3, dropped: 2 });
  await log.flush();
  t.same((await rows(tdb.sql)).map((r) => r.username), ['user2@example.org', 'user3@example.org', 'user4@example.org']);
});

t.test('write errors are logged and counted, entries retried, never thrown at record()', async (t) => {
  const tdb = await createTestDatabase(t);
  const lines: string[] = [];
  const logger = createLogger({ level: 'info', format: 'json', destination: { write: (s: string) => lines.push(s) } as never });
  let fail = true;
  const write = async (q: Queryable, e: readonly SaslLogEntry[]) => {
    if (fail) throw Object.assign(new Error('database unavailable during REPLACE INTO sasl_log'), { code: 'ERR_DB_UNAVAILABLE' });
    return writeSaslLog(q, e);
  };
  let now = T0;
  const log = createLoginLog({ db: tdb.db, logger, config: cfg(), clock: { now: () => now }, write });
  t.teardown(() => log.stop());
  log.record(entry(1, { appPassword: 1 }));
  log.record(entry(2));
  await log.flush();
  t.match(log.stats(), { writeErrors: 1, written: 0, queued: 2 });
  t.ok(lines.some((l) => l.includes('login log write failed')), 'logged');
  now += 5000;
  log.record(entry(1, { appPassword: 9 })); // newer than the failed one: must win
  fail = false;
  await log.flush();
  t.match(log.stats(), { writeErrors: 1, written: 2, queued: 0 });
  t.same((await rows(tdb.sql)).map((r) => [r.username, r.app_password]), [['user1@example.org', 9], ['user2@example.org', 0]]);
});

t.test('stop() flushes what is queued and refuses later entries', async (t) => {
  const tdb = await createTestDatabase(t);
  const log = createLoginLog({ db: tdb.db, logger: silentLogger(), config: cfg({ batchSize: 2 }) });
  for (let i = 0; i < 5; i++) log.record(entry(i));
  await log.stop();
  t.equal((await rows(tdb.sql)).length, 5);
  log.record(entry(99));
  t.match(log.stats(), { written: 5, dropped: 1, queued: 0 });
  await log.stop();
});

t.test('stop() with the database down loses the entries, counted, without throwing', async (t) => {
  const tdb = await createTestDatabase(t);
  const write = async () => {
    throw new Error('down');
  };
  const log = createLoginLog({ db: tdb.db, logger: silentLogger(), config: cfg({ batchSize: 2 }), write });
  for (let i = 0; i < 5; i++) log.record(entry(i));
  await log.stop();
  t.match(log.stats(), { lost: 5, queued: 0, written: 0 });
});

t.test('disabled: record() is a no-op', async (t) => {
  const tdb = await createTestDatabase(t);
  const log = createLoginLog({ db: tdb.db, logger: silentLogger(), config: cfg({ enabled: false }) });
  log.record(entry(1));
  await log.stop();
  t.match(log.stats(), { recorded: 0, queued: 0 });
  t.equal((await rows(tdb.sql)).length, 0);
});
