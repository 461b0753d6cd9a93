import t from 'tap';
import { createLogger, lazyChild } from '../../src/logging/index.js';

function sink(): { lines: string[]; write(s: string): void } {
  const lines: string[] = [];
  return { lines, write: (s: string) => void lines.push(s) };
}

t.test('secret-bearing keys never reach the output', async (t) => {
  const out = sink();
  const log = createLogger({ level: 'trace', format: 'json', destination: out as never, isTTY: false });
  const secrets = ['hunter2-pw', '{SSHA256}abcdefhash', 'eyJtoken', 'client-secret-value', 'Basic dXNlcjpwYXNz', '{BLF-CRYPT}$2y$10$kchash'];
  log.info({ password: secrets[0], user: 'alice@example.org' }, 'login');
  log.info({ req: { password: secrets[0], headers: { authorization: secrets[4], 'x-mailauth-token': 'tok-tok-tok' } } }, 'request');
  log.warn({ account: { hash: secrets[1], stored: secrets[1] } }, 'bad hash');
  log.error({ idp: { access_token: secrets[2], client_secret: secrets[3] } }, 'idp');
  log.info({ user: { attributes: { mailcow_password: [secrets[5]] } } }, 'user');
  log.child({ reqId: 1 }).info({ body: { password: secrets[0] } }, 'child');
  const all = out.lines.join('');
  for (const s of [...secrets, 'tok-tok-tok']) t.notMatch(all, s, `output does not contain ${s.slice(0, 6)}…`);
  t.match(all, /alice@example\.org/, 'non-secret fields are kept');
  t.match(all, /\[redacted\]/);
  t.equal(out.lines.length, 6);
});

t.test('levels', async (t) => {
  const out = sink();
  const log = createLogger({ level: 'warn', format: 'json', destination: out as never, isTTY: false });
  log.info('quiet');
  log.warn('loud');
  t.equal(out.lines.length, 1);
  t.match(JSON.parse(out.lines[0] as string), { level: 40, msg: 'loud' });
});

t.test('lazyChild builds the child on first use only, with redacted bindings', async (t) => {
  const out = sink();
  const root = createLogger({ level: 'info', format: 'json', destination: out as never, isTTY: false });
  let children = 0;
  const child = root.child.bind(root);
  root.child = ((b: Record<string, unknown>, o?: unknown) => {
    children += 1;
    return child(b, o as never);
  }) as typeof root.child;
  const lazy = lazyChild(root, { reqId: 'r1', password: 'hunter2-pw' });
  t.equal(children, 0, 'nothing built yet');
  t.equal(lazy.isLevelEnabled('info'), true);
  lazy.warn({ scheme: 'x' }, 'odd hash');
  lazy.error('again');
  t.equal(children, 1, 'one child, built once');
  t.equal(out.lines.length, 2);
  const line = JSON.parse(out.lines[0] as string) as Record<string, unknown>;
  t.match(line, { reqId: 'r1', scheme: 'x', msg: 'odd hash', password: '[redacted]' });
  t.notMatch(out.lines.join(''), 'hunter2-pw');
});
