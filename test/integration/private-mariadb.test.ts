/**
 * The private-MariaDB helper (test/helpers/private-mariadb.ts) does what the
 * fault tests rely on: its own port and data directory, data kept across a
 * clean stop, a kill and a restart on the same port; a paused server accepts
 * TCP but answers nothing; a stopped one refuses connections.
 */
import { spawnSync } from 'node:child_process';
import { existsSync, mkdirSync, mkdtempSync, writeFileSync } from 'node:fs';
import { connect } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import mysql from 'mysql2/promise';
import t from 'tap';
import { requirePrivateMariadb, startPrivateMariadb } from '../helpers/private-mariadb.js';

function tcpConnect(port: number): Promise<'connected' | 'refused' | string> {
  return new Promise((resolve) => {
    const s = connect(port, '127.0.0.1');
    s.once('connect', () => {
      s.destroy();
      resolve('connected');
    });
    s.once('error', (err: NodeJS.ErrnoException) => resolve(err.code === 'ECONNREFUSED' ? 'refused' : (err.code ?? String(err))));
  });
}

if (requirePrivateMariadb(t)) {
  t.test('own port, data kept across stop, kill and restart; pause stalls; stop refuses', async (t) => {
    const m = await startPrivateMariadb(t);
    t.not(m.port, 3306, 'not the shared server');
    t.equal(m.state, 'running');
    const tdb = await m.createDatabase(t);
    await tdb.db.exec('INSERT INTO domain (domain, description) VALUES (?, ?)', ['kept.example', '']);

    // Paused: the kernel completes the TCP handshake, MariaDB never greets.
    m.pause();
    t.equal(m.state, 'paused');
    const started = Date.now();
    await t.rejects(
      mysql.createConnection({ host: '127.0.0.1', port: m.port, user: 'root', connectTimeout: 500 }),
      'no handshake from a paused server',
    );
    t.ok(Date.now() - started >= 400, 'the attempt hung until its own timeout');
    m.resume();
    t.same(await m.query('SELECT 1 AS one'), [{ one: 1 }], 'answers again after resume');

    const port = m.port;
    await m.stop();
    t.equal(m.state, 'stopped');
    t.equal(await tcpConnect(port), 'refused', 'a stopped server refuses connections');
    await m.start();
    t.equal(m.port, port, 'restarted on the same port');
    t.same(await m.query(`SELECT domain FROM \`${tdb.name}\`.domain`), [{ domain: 'kept.example' }], 'data kept across a clean stop');

    await m.kill();
    t.equal(await tcpConnect(port), 'refused', 'a killed server refuses connections');
    await m.restart();
    t.same(await m.query(`SELECT domain FROM \`${tdb.name}\`.domain`), [{ domain: 'kept.example' }], 'data kept across a kill (crash recovery)');
    t.ok((await m.status('Connections')) > 0, 'status counters readable');
  });

  t.test('leftovers of a test process that died without its teardown are swept; live ones are not', async (t) => {
    const dead = spawnSync(process.execPath, ['-e', 'process.stdout.write(String(process.pid))'], { encoding: 'utf8' });
    const deadPid = Number(dead.stdout);
    const orphan = mkdtempSync(join(tmpdir(), 'mailauth-pmdb-'));
    mkdirSync(join(orphan, 'data'));
    writeFileSync(join(orphan, 'owner.pid'), String(deadPid));
    writeFileSync(join(orphan, 'mysqld.pid'), String(deadPid)); // no such process any more: nothing to kill
    const live = mkdtempSync(join(tmpdir(), 'mailauth-pmdb-'));
    writeFileSync(join(live, 'owner.pid'), String(process.pid));
    t.teardown(() => spawnSync('rm', ['-rf', live, orphan]));
    await startPrivateMariadb(t);
    t.notOk(existsSync(orphan), 'the dead owner’s directory is gone');
    t.ok(existsSync(live), 'a live owner’s directory stays');
  });

  t.test('two servers side by side have separate ports and data', async (t) => {
    const [a, b] = await Promise.all([startPrivateMariadb(t), startPrivateMariadb(t)]);
    t.not(a.port, b.port);
    t.not(a.datadir, b.datadir);
    await a.query('CREATE DATABASE only_on_a');
    const onB = await b.query<{ Database: string }>("SHOW DATABASES LIKE 'only_on_a'");
    t.same(onB, [], 'b does not see a’s database');
  });
}
