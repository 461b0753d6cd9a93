/**
 * Issue 16: the connection limiter on its own, with sockets that are plain event emitters
 * and a clock the test moves. test/availability/ runs it inside the daemon under attack.
 */
import { EventEmitter } from 'node:events';
import type { Socket } from 'node:net';
import t from 'tap';
import { createConnectionLimiter } from '../../src/server/connection-limits.js';
import { createLogger } from '../../src/logging/index.js';

interface FakeSocket extends EventEmitter {
  remoteAddress: string;
  destroyed: boolean;
  name: string;
  destroy(): void;
}

function world(o: { maxConnections: number; maxPerPeer: number }) {
  let clock = 1_000_000;
  const lines: string[] = [];
  const logger = createLogger({ level: 'warn', format: 'json', destination: { write: (l: string) => void lines.push(l) } });
  const limiter = createConnectionLimiter({ ...o, untrustedIdleMs: 2000, logger, now: () => clock });
  const server = new EventEmitter();
  limiter.attach(server as never);
  const connect = (name: string, peer = '127.0.0.1'): FakeSocket => {
    const s = Object.assign(new EventEmitter(), {
      remoteAddress: peer,
      destroyed: false,
      name,
      destroy() {
        if (s.destroyed) return;
        s.destroyed = true;
        s.emit('close');
      },
    });
    server.emit('connection', s);
    return s;
  };
  const serve = (s: FakeSocket, trusted = false): void => {
    limiter.requestStarted(s as unknown as Socket);
    if (trusted) limiter.trust(s as unknown as Socket);
    limiter.requestDone(s as unknown as Socket);
  };
  return { limiter, connect, serve, lines, tick: (ms: number) => (clock += ms), close: () => limiter.close() };
}

t.test('at the limit the oldest answered untrusted connection goes first, then a silent one, then a trusted one', async (t) => {
  const w = world({ maxConnections: 3, maxPerPeer: 3 });
  t.teardown(w.close);
  const trusted = w.connect('trusted');
  w.serve(trusted, true);
  w.tick(10);
  const answered = w.connect('answered');
  w.serve(answered);
  w.tick(10);
  const silent = w.connect('silent');
  w.tick(600);
  const a = w.connect('a');
  t.ok(answered.destroyed, 'the answered keep-alive connection without a token went first');
  t.notOk(silent.destroyed || trusted.destroyed);
  const b = w.connect('b');
  t.ok(silent.destroyed, 'then the one that sent nothing for longer than the grace');
  t.notOk(trusted.destroyed || a.destroyed);
  w.tick(600);
  w.serve(a);
  w.connect('c');
  t.ok(a.destroyed, 'an answered untrusted connection before the trusted one');
  t.notOk(trusted.destroyed || b.destroyed);
  t.match(w.lines.join(''), /connection limit reached/);
  t.equal(w.limiter.stats().reclaimed, 3);
});

t.test('a connection flood pushes out its own newest, not the connection accepted before it', async (t) => {
  const w = world({ maxConnections: 2, maxPerPeer: 2 });
  t.teardown(w.close);
  const probe = w.connect('probe');
  const other = w.connect('other');
  const third = w.connect('third');
  t.notOk(probe.destroyed, 'the probe accepted first keeps its chance to send its request');
  t.ok(other.destroyed, 'the youngest silent connection made room');
  t.notOk(third.destroyed);
  w.serve(third);
  const fourth = w.connect('fourth');
  t.ok(third.destroyed, 'an answered idle connection goes before a new one');
  t.notOk(probe.destroyed || fourth.destroyed);
  t.equal(w.limiter.stats().refused, 0);
});

t.test("a valid token's connection goes only when nothing else can", async (t) => {
  const w = world({ maxConnections: 2, maxPerPeer: 2 });
  t.teardown(w.close);
  const dovecot = w.connect('dovecot');
  w.serve(dovecot, true);
  w.connect('x');
  const y = w.connect('y');
  t.notOk(dovecot.destroyed, 'an unauthenticated newcomer pushed out another new connection, not Dovecot');
  w.limiter.requestStarted(y as unknown as Socket);
  const z = w.connect('z');
  t.ok(dovecot.destroyed, 'with everything else busy, the idle trusted connection made room');
  t.notOk(z.destroyed || y.destroyed);
});

t.test('a busy connection is never closed for a newcomer; per-peer limits reclaim within the peer', async (t) => {
  const w = world({ maxConnections: 10, maxPerPeer: 1 });
  t.teardown(w.close);
  const busy = w.connect('busy', '192.0.2.1');
  w.limiter.requestStarted(busy as unknown as Socket);
  const other = w.connect('other-peer', '192.0.2.2');
  w.serve(other);
  w.tick(1000);
  const newcomer = w.connect('newcomer', '192.0.2.1');
  t.ok(newcomer.destroyed, 'refused: its peer has only a busy connection');
  t.notOk(busy.destroyed || other.destroyed, 'nothing else was touched');
});
