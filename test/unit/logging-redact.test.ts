import t from 'tap';
import { createLogger, redactSecrets } from '../../src/logging/index.js';

t.test('redactSecrets: any depth, any case, copy-on-write', async (t) => {
  const clean = { user: 'alice@example.org', nested: { list: [1, 'two', { ok: true }] } };
  t.equal(redactSecrets(clean), clean, 'nothing secret: the same object, no copy');
  const deep = { a: { b: { c: { d: { e: { password: 'p1', keep: 1 } } } } } };
  const out = redactSecrets(deep);
  t.equal(out.a.b.c.d.e.password, '[redacted]');
  t.equal(out.a.b.c.d.e.keep, 1);
  t.equal(deep.a.b.c.d.e.password, 'p1', 'the caller’s object is untouched');
  t.same(redactSecrets({ headers: { Authorization: 'Basic x', 'X-Mailauth-Token': 'tok' } }), {
    headers: { Authorization: '[redacted]', 'X-Mailauth-Token': '[redacted]' },
  });
  t.same(redactSecrets([{ token: 't' }, 'x']), [{ token: '[redacted]' }, 'x']);
  t.same(redactSecrets({ password: undefined }), { password: undefined }, 'undefined stays (it is not printed)');
  const err = Object.assign(new Error('boom'), { code: 'E', bindpass: 'secret-bind' });
  const r = redactSecrets({ e: err }) as unknown as { e: Record<string, unknown> };
  t.equal(r.e.bindpass, '[redacted]');
  t.equal(r.e.message, 'boom');
  const cyclic: Record<string, unknown> = { name: 'loop' };
  cyclic.self = cyclic;
  t.doesNotThrow(() => redactSecrets(cyclic), 'cycles end at the depth limit');
});

t.test('no secret reaches the output at depth 4 or in an error', async (t) => {
  const lines: string[] = [];
  const log = createLogger({ level: 'info', format: 'json', destination: { write: (s: string) => void lines.push(s) } as never, isTTY: false });
  log.info({ a: { b: { c: { d: { client_secret: 'cs-deep-value' } } } } }, 'deep');
  log.error({ err: Object.assign(new Error('db'), { password: 'pw-in-error' }) }, 'failed');
  log.child({ session: { token: 'child-token-value' } }).info('child');
  const all = lines.join('');
  for (const s of ['cs-deep-value', 'pw-in-error', 'child-token-value']) t.notOk(all.includes(s), `${s} redacted`);
  t.match(all, /"msg":"failed"/);
  t.match(all, /"message":"db"/, 'the error itself is still logged');
});
