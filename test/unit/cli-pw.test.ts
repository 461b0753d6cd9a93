import t from 'tap';
import { cli } from '../helpers/cli.js';

t.test('pw hashes from stdin and tests the result', async (t) => {
  const made = await cli(['pw', '-s', 'ssha256'], { stdin: 'correct horse\n' });
  t.equal(made.code, 0, made.stderr);
  const hash = made.stdout.trim();
  t.match(hash, /^\{SSHA256\}[A-Za-z0-9+/=]+$/);
  t.equal((await cli(['pw', '-t', hash], { stdin: 'correct horse\n' })).code, 0, 'match → 0');
  t.equal((await cli(['pw', '-t', hash], { stdin: 'wrong\n' })).code, 1, 'mismatch → 1');
  const bad = await cli(['pw', '-t', '{SSHA256}!!notbase64', '-p', 'x']);
  t.equal(bad.code, 2, 'malformed → 2');
  t.match(bad.stdout, /malformed/);
  t.equal((await cli(['pw', '-t', '{NOPE}abc', '-p', 'x'])).code, 2, 'unsupported → 2');
});

t.test('pw --json and -l', async (t) => {
  const r = await cli(['--json', 'pw', '-s', 'BLF-CRYPT', '-r', '4', '-p', 'pw']);
  t.equal(r.code, 0, r.stderr);
  t.match(r.json(), { scheme: 'BLF-CRYPT', hash: /^\{BLF-CRYPT\}\$2y\$04\$/ });
  const list = await cli(['--json', 'pw', '-l']);
  const schemes = list.json<{ name: string; hash: boolean }[]>();
  t.ok(schemes.some((s) => s.name === 'SSHA256' && s.hash));
  t.ok(schemes.some((s) => s.name === 'CRAM-MD5') === false);
  t.ok(schemes.some((s) => s.name === 'PLAIN-TRUNC' && !s.hash));
});

t.test('pw refuses verify-only schemes, bad cost, empty password', async (t) => {
  const r = await cli(['pw', '-s', 'PLAIN-MD5', '-p', 'x']);
  t.equal(r.code, 2);
  t.match(r.stderr, /PLAIN-MD5 cannot make new hashes/);
  const cost = await cli(['pw', '-r', '40', '-p', 'x']);
  t.equal(cost.code, 2);
  t.match(cost.stderr, /--rounds must be an integer between 4 and 18/);
  const empty = await cli(['pw'], { stdin: '\n' });
  t.equal(empty.code, 2);
  t.match(empty.stderr, /empty password/);
});

t.test('--version and --help', async (t) => {
  const v = await cli(['--version']);
  t.equal(v.code, 0);
  t.match(v.stdout, /^\d+\.\d+\.\d+/);
  const h = await cli(['pw', '--help']);
  t.equal(h.code, 0);
  t.match(h.stdout, /Examples:/);
  const u = await cli(['no-such-command']);
  t.equal(u.code, 2, 'unknown command is a usage error');
});

t.test('issue 16: pw refuses what verification will refuse, and bcrypt past 72 bytes unless told to warn', async (t) => {
  const long = 'x'.repeat(73);
  const refused = await cli(['pw', '-s', 'BLF-CRYPT', '-r', '4', '-p', long]);
  t.equal(refused.code, 2, 'refused by default');
  t.match(refused.stderr, /first 72 bytes/);
  t.equal(refused.stdout, '', 'no hash written');
  const warned = await cli(['pw', '-s', 'BLF-CRYPT', '-r', '4', '--long-bcrypt', 'warn', '-p', long]);
  t.equal(warned.code, 0, warned.stderr);
  t.match(warned.stderr, /warning: BLF-CRYPT uses only the first 72 bytes/);
  t.match(warned.stdout, /^\{BLF-CRYPT\}/);
  t.equal((await cli(['pw', '-s', 'BLF-CRYPT', '-r', '4', '-p', 'y'.repeat(72)])).code, 0, '72 bytes are fine');
  const sha = await cli(['pw', '-s', 'SHA512-CRYPT', '-p', 'z'.repeat(513)]);
  t.equal(sha.code, 2, 'SHA-crypt over 512 bytes: verification would refuse it');
  t.match(sha.stderr, /longer than 512 bytes/);
  t.equal((await cli(['pw', '-s', 'SHA512-CRYPT', '-p', 'z'.repeat(512)])).code, 0, '512 bytes are fine');
});
