/**
 * Security review, door 4: src/passwords against hostile input. Passwords of
 * a megabyte and hash strings built to hang, crash or allocate (huge rounds,
 * costs, memory, base64 that almost parses) must come back as a plain
 * outcome: never an exception, never a match, and work caps applied before any
 * hashing. The constant-time comparisons are pinned by reading the source.
 */
import { readFileSync, readdirSync } from 'node:fs';
import t from 'tap';
import { hash, listSchemes, schemeOf, verify } from '../../src/passwords/index.js';

const PW = 'hostile-input-pw';
const MIB = 1 << 20;
const BIG_PW = 'x'.repeat(MIB);

t.test('a 1 MiB password against every scheme: a mismatch, crypt formats refused before hashing', async (t) => {
  const stored: Record<string, string> = {};
  for (const s of ['BLF-CRYPT', 'ARGON2ID', 'ARGON2I', 'SHA512-CRYPT', 'SHA256-CRYPT', 'SSHA256', 'SSHA512']) stored[s] = await hash(s, PW, { bcryptCost: 4 });
  Object.assign(stored, {
    PLAIN: `{PLAIN}${PW}`,
    'PLAIN-TRUNC': `{PLAIN-TRUNC}3-${PW.slice(0, 3)}`,
    'PLAIN-MD5': `{PLAIN-MD5}${'0'.repeat(32)}`,
    'PLAIN-MD4': `{PLAIN-MD4}${'0'.repeat(32)}`,
    SHA512: `{SHA512}${Buffer.alloc(64).toString('base64')}`,
    'MD5-CRYPT': '{MD5-CRYPT}$1$saltsalt$' + 'a'.repeat(22),
    'DES-CRYPT': '{DES-CRYPT}abcdefghijklm',
    PBKDF2: `{PBKDF2}$1$salt$5000$${'0'.repeat(40)}`,
    'PBKDF2-SHA512': `{PBKDF2-SHA512}10000$${Buffer.alloc(16).toString('base64')}$${Buffer.alloc(64).toString('base64')}`,
  });
  for (const [scheme, value] of Object.entries(stored)) {
    const r = await verify(value, BIG_PW);
    t.equal(r.outcome, 'mismatch', `${scheme}: mismatch`);
    // The JavaScript crypt implementations cost O(length) per round: they must refuse before running.
    if (/^(SHA\d+-CRYPT|MD5-CRYPT)$/.test(scheme)) t.equal(r.reason, 'password longer than 512 bytes', `${scheme}: capped before hashing`);
  }
  // The same for near-misses that used to trip C-string implementations.
  for (const s of ['BLF-CRYPT', 'ARGON2ID', 'SHA512-CRYPT', 'SSHA512']) {
    for (const guess of [`${PW}\u0000`, `${PW}\u0000anything`, `${PW}\n`]) {
      t.equal((await verify(stored[s] as string, guess)).outcome, 'mismatch', `${s}: ${JSON.stringify(guess)} is not ${JSON.stringify(PW)}`);
    }
    t.equal((await verify(stored[s] as string, PW)).outcome, 'match', `${s}: control`);
  }
});

t.test('hostile hash strings: a clear outcome, never a throw, never a match', async (t) => {
  const b64 = (n: number): string => Buffer.alloc(n, 0x41).toString('base64');
  const cases: [string, string, 'malformed' | 'unsupported_scheme' | 'mismatch', RegExp?][] = [
    ['1 MiB of valid salted base64', `{SSHA512}${b64(MIB)}`, 'mismatch'],
    ['1 MiB of base64 with a bad last character', `{SSHA512}${b64(MIB).slice(0, -1)}!`, 'malformed', /not valid base64/],
    ['1 MiB of base64 without padding', `{SSHA512}${'A'.repeat(MIB + 1)}`, 'malformed', /not valid base64/],
    ['4 MiB of whitespace-split base64', `{SHA512}${'A '.repeat(2 * MIB)}`, 'malformed'],
    ['SHA512-CRYPT rounds above the cap', '{SHA512-CRYPT}$6$rounds=1000001$salt$' + 'a'.repeat(86), 'malformed', /rounds too high/],
    ['SHA512-CRYPT rounds of 10^10', '{SHA512-CRYPT}$6$rounds=9999999999$salt$' + 'a'.repeat(86), 'malformed', /rounds too high/],
    ['SHA512-CRYPT rounds with 1000 digits', `{SHA512-CRYPT}$6$rounds=${'9'.repeat(1000)}$salt$${'a'.repeat(86)}`, 'malformed', /canonical/],
    ['SHA256-CRYPT rounds=0', '{SHA256-CRYPT}$5$rounds=0$salt$' + 'a'.repeat(43), 'malformed'],
    ['SHA-crypt salt of 1 MiB', `{SHA512-CRYPT}$6$${'s'.repeat(MIB)}$${'a'.repeat(86)}`, 'malformed', /salt longer/],
    ['MD5-CRYPT salt of 1 MiB', `{MD5-CRYPT}$1$${'s'.repeat(MIB)}$${'a'.repeat(22)}`, 'malformed', /salt longer/],
    ['bcrypt cost 31', '{BLF-CRYPT}$2y$31$' + 'a'.repeat(53), 'malformed', /cost too high/],
    ['bcrypt cost 19', '{BLF-CRYPT}$2y$19$' + 'a'.repeat(53), 'malformed', /cost too high/],
    ['bcrypt cost 03', '{BLF-CRYPT}$2y$03$' + 'a'.repeat(53), 'malformed'],
    ['bcrypt with 1 MiB of salt', `{BLF-CRYPT}$2y$04$${'a'.repeat(MIB)}`, 'malformed'],
    ['argon2 memory 4 TiB', '{ARGON2ID}$argon2id$v=19$m=4294967295,t=1,p=1$c2FsdHNhbHQ$aGFzaGhhc2hoYXNoaGFzaA', 'malformed', /memory cost too high/],
    ['argon2 time 2^32', '{ARGON2ID}$argon2id$v=19$m=65536,t=4294967295,p=1$c2FsdHNhbHQ$aGFzaGhhc2hoYXNoaGFzaA', 'malformed', /time cost too high/],
    ['argon2 parallelism 255', '{ARGON2ID}$argon2id$v=19$m=65536,t=1,p=255$c2FsdHNhbHQ$aGFzaGhhc2hoYXNoaGFzaA', 'malformed', /parallelism too high/],
    ['argon2 with zero cost', '{ARGON2ID}$argon2id$v=19$m=0,t=0,p=0$c2FsdHNhbHQ$aGFzaGhhc2hoYXNoaGFzaA', 'malformed'],
    ['argon2 with a 1 MiB salt', `{ARGON2ID}$argon2id$v=19$m=8,t=1,p=1$${'A'.repeat(MIB)}$aGFzaGhhc2hoYXNoaGFzaA`, 'mismatch'],
    ['argon2 without a final $', `{ARGON2ID}$argon2id$v=19$m=8,t=1,p=1$${'A'.repeat(MIB)}`, 'malformed'],
    ['argon2d', '{ARGON2ID}$argon2d$v=19$m=65536,t=3,p=1$c2FsdHNhbHQ$aGFzaGhhc2hoYXNoaGFzaA', 'unsupported_scheme'],
    ['PBKDF2 iterations 10^10', `{PBKDF2}$1$salt$9999999999$${'0'.repeat(40)}`, 'malformed', /rounds too high/],
    ['PBKDF2-SHA512 iterations above the cap', `{PBKDF2-SHA512}10000001$c2FsdA==$${Buffer.alloc(64).toString('base64')}`, 'malformed', /too high/],
    ['PBKDF2-SHA512 hash of 1 MiB', `{PBKDF2-SHA512}1000$c2FsdA==$${b64(MIB)}`, 'malformed', /16\.\.64/],
    ['PLAIN-TRUNC length 999999999', '{PLAIN-TRUNC}999999999-abc', 'mismatch'],
    ['a 1 MiB scheme name', `{${'A'.repeat(MIB)}}x`, 'malformed'],
    ['an unterminated 1 MiB prefix', `{${'A'.repeat(MIB)}`, 'malformed'],
    ['1 MiB of $ under CRYPT', `{CRYPT}${'$'.repeat(MIB)}`, 'malformed'],
    ['NUL in a crypt string', '{SHA512-CRYPT}$6$sa\u0000lt$' + 'a'.repeat(86), 'malformed'],
    ['non-ASCII in a crypt string', '{BLF-CRYPT}$2y$04$' + 'é'.repeat(53), 'malformed'],
    ['yescrypt', '{CRYPT}$y$j9T$salt$hash', 'unsupported_scheme'],
    ['unknown scheme', '{NOPE}x', 'unsupported_scheme'],
    ['empty', '', 'malformed'],
    ['empty salted payload', '{SSHA256}', 'malformed'],
    ['digest of the wrong size', `{SHA256}${Buffer.alloc(31).toString('base64')}`, 'malformed'],
  ];
  for (const [name, stored, outcome, reason] of cases) {
    for (const password of [PW, '', BIG_PW]) {
      let r;
      try {
        r = await verify(stored, password);
      } catch (err) {
        t.fail(`${name}: threw ${(err as Error).message}`);
        continue;
      }
      t.not(r.outcome, 'match', `${name} (password of ${password.length}): never a match`);
      if (password === PW) {
        t.equal(r.outcome, outcome, `${name}: ${outcome}`);
        if (reason) t.match(r.reason, reason, `${name}: says why`);
        if (stored.length >= 8) t.notOk((r.reason ?? '').includes(stored.slice(-40)), `${name}: the reason does not quote the hash`);
      }
    }
    t.doesNotThrow(() => schemeOf(stored), `${name}: schemeOf does not throw`);
  }
});

t.test('hash() refuses what verify() would refuse to read', async (t) => {
  await t.rejects(hash('BLF-CRYPT', PW, { bcryptCost: 19 }), { code: 'ERR_INVALID_INPUT' });
  await t.rejects(hash('BLF-CRYPT', PW, { bcryptCost: 3 }), { code: 'ERR_INVALID_INPUT' });
  const weak = listSchemes().filter((s) => s.weak && s.hash).map((s) => s.name);
  t.same(weak.sort(), ['SSHA256', 'SSHA512'], 'the only weak schemes that may write new hashes (mailcow can write them)');
});

t.test('digests and secrets are compared in constant time (pinned by reading the source)', async (t) => {
  const dir = new URL('../../src/passwords/', import.meta.url);
  const files = readdirSync(dir).filter((f) => f.endsWith('.ts'));
  t.ok(files.length > 5);
  for (const f of files) {
    const src = readFileSync(new URL(f, dir), 'utf8');
    t.notMatch(src, /\.equals\(|Buffer\.compare\(|\.compare\(/, `${f}: no Buffer equals/compare (not constant-time)`);
    // A computed value may only meet the stored one through equalBytes/equalSecret or a library verify.
    t.notMatch(src.replace(/typeof \w+ [!=]== '\w+'/g, ''), /\b(?:computed|checksum|expected|stored)\s*[!=]==|[!=]==\s*(?:computed|checksum|expected|stored)\b/, `${f}: no === on computed digests`);
  }
  const encoding = readFileSync(new URL('encoding.ts', dir), 'utf8');
  t.match(encoding, /export function equalBytes[\s\S]*?timingSafeEqual\(a, b\)/, 'equalBytes uses timingSafeEqual');
  t.match(encoding, /export function equalSecret[\s\S]*?timingSafeEqual\(da, db\)/, 'equalSecret compares fixed-size digests with timingSafeEqual');
});
