import { readFileSync } from 'node:fs';
import t from 'tap';
import {
  createHashPool,
  hash,
  isSchemeAllowed,
  listSchemes,
  parseStored,
  schemeOf,
  verify,
  type HashScheme,
  type VerifyOutcome,
} from '../../src/passwords/index.js';

interface Vector {
  scheme: string;
  stored: string;
  password: string;
  source: string;
}

const fixture = JSON.parse(
  readFileSync(new URL('../fixtures/passwords/vectors.json', import.meta.url), 'utf8'),
) as { vectors: Vector[] };

const byScheme = (scheme: string): Vector => {
  const found = fixture.vectors.find((v) => v.scheme === scheme && v.password === 'password' && v.stored.startsWith(`{${scheme}}`));
  if (!found) throw new Error(`no ascii vector for ${scheme}`);
  return found;
};

/** Swap the case of the label only: `{SSHA256}…` → `{ssha256}…`. */
function lowerLabel(stored: string): string {
  const close = stored.indexOf('}');
  return `${stored.slice(0, close).toLowerCase()}${stored.slice(close)}`;
}

t.test('vectors from real tools: right password matches, wrong ones do not', async (t) => {
  t.ok(fixture.vectors.length > 150, 'fixture loaded');
  for (const v of fixture.vectors) {
    await t.test(`${v.scheme} ← ${v.source}`, async (t) => {
      t.same(await verify(v.stored, v.password), { outcome: 'match', scheme: v.scheme });
      t.equal((await verify(v.stored, `x${v.password}`)).outcome, 'mismatch');
      t.equal((await verify(v.stored, '')).outcome, 'mismatch');
      t.equal(schemeOf(v.stored), v.scheme);
      if (v.stored.startsWith('{')) t.equal((await verify(lowerLabel(v.stored), v.password)).outcome, 'match', 'label case ignored');
    });
  }
});

t.test('every scheme mailcow accepts has at least one real vector', async (t) => {
  const seen = new Set(fixture.vectors.map((v) => v.stored.match(/^\{([^}.]+)/)?.[1]?.toUpperCase()));
  for (const { name } of listSchemes()) t.ok(seen.has(name), `${name} has a vector`);
});

t.test('Dovecot encodings: suffixes, and hex/base64 guessed by length', async (t) => {
  const cases: [string, VerifyOutcome][] = [
    ['{PLAIN-MD5}5f4dcc3b5aa765d61d8327deb882cf99', 'match'],
    ['{PLAIN-MD5}5F4DCC3B5AA765D61D8327DEB882CF99', 'match'],
    ['{PLAIN-MD5}X03MO1qnZdYdgyfeuILPmQ==', 'match'],
    ['{plain-md5.B64}X03MO1qnZdYdgyfeuILPmQ==', 'match'],
    ['{PLAIN-MD5.base64}X03MO1qnZdYdgyfeuILPmQ==', 'match'],
    ['{LDAP-MD5}5f4dcc3b5aa765d61d8327deb882cf99', 'match'],
    ['{SHA1}5baa61e4c9b93f3f0682250b6cf8331b7ee68fd8', 'match'],
    ['{sha256.hex}5e884898da28047151d0e56f8dc6292773603d0d6aabbdd62a11ef721d1542d8', 'match'],
    ['{SHA1}W6ph5Mm5Pz8G giULbPgzG37mj9g=', 'match'], // Dovecot skips whitespace in base64
    ['{PLAIN.b64}cGFzc3dvcmQ=', 'match'],
    ['{SHA1.hex}W6ph5Mm5Pz8GgiULbPgzG37mj9g=', 'malformed'],
    ['{SHA1.b64}5baa61e4c9b93f3f0682250b6cf8331b7ee68fd8', 'malformed'],
  ];
  for (const [stored, outcome] of cases) t.equal((await verify(stored, 'password')).outcome, outcome, stored);
});

t.test('multi-format labels resolve to the format found, as Dovecot/libc do', async (t) => {
  const md5crypt = '$1$p3sGJsFk$15nsnl5UbI8.JMgh2xucQ/';
  t.same(await verify(`{SHA512-CRYPT}${md5crypt}`, 'password'), { outcome: 'match', scheme: 'MD5-CRYPT' });
  t.same(await verify(`{MD5}${md5crypt}`, 'password'), { outcome: 'match', scheme: 'MD5-CRYPT' });
  t.same(await verify('{MD5}5f4dcc3b5aa765d61d8327deb882cf99', 'password'), { outcome: 'match', scheme: 'PLAIN-MD5' });
  const des = fixture.vectors.find((v) => v.stored.startsWith('{DES-CRYPT}') && v.password === 'password');
  if (!des) throw new Error('no DES vector');
  t.same(await verify(des.stored.replace('{DES-CRYPT}', '{CRYPT}'), 'password'), { outcome: 'match', scheme: 'DES-CRYPT' });
  const argon2id = byScheme('ARGON2ID');
  t.same(await verify(argon2id.stored.replace('{ARGON2ID}', '{ARGON2I}'), 'password'), { outcome: 'match', scheme: 'ARGON2ID' });
  // Dovecot checks these two labels itself and refuses other formats.
  t.equal((await verify(`{BLF-CRYPT}${md5crypt}`, 'password')).outcome, 'malformed');
  t.equal((await verify(`{MD5-CRYPT}${byScheme('SHA512-CRYPT').stored.slice(14)}`, 'password')).outcome, 'malformed');
});

t.test('no {SCHEME} prefix: default scheme, CRYPT unless told otherwise', async (t) => {
  const bare = fixture.vectors.filter((v) => !v.stored.startsWith('{'));
  t.ok(bare.length >= 3);
  for (const v of bare) t.same(await verify(v.stored, v.password), { outcome: 'match', scheme: v.scheme });
  t.same(await verify('password', 'password'), {
    outcome: 'malformed',
    scheme: 'CRYPT',
    reason: 'malformed hash for scheme CRYPT: not a crypt(3) string',
  });
  t.equal((await verify('password', 'password', { defaultScheme: 'plain' })).outcome, 'match');
  t.equal((await verify('5f4dcc3b5aa765d61d8327deb882cf99', 'password', { defaultScheme: 'PLAIN-MD5' })).outcome, 'match');
  // Dovecot's special case: a bare $1$ is MD5-CRYPT whatever the default.
  t.same(await verify('$1$p3sGJsFk$15nsnl5UbI8.JMgh2xucQ/', 'password', { defaultScheme: 'PLAIN' }), {
    outcome: 'match',
    scheme: 'MD5-CRYPT',
  });
  t.equal((await verify('x', 'x', { defaultScheme: 'not a scheme!' })).outcome, 'malformed');
});

t.test('bcrypt variants', async (t) => {
  const y = byScheme('BLF-CRYPT').stored.slice('{BLF-CRYPT}'.length);
  for (const variant of ['2a', '2b', '2y', '2x']) {
    t.equal((await verify(`{BLF-CRYPT}$${variant}${y.slice(3)}`, 'password')).outcome, 'match', `$${variant}$`);
  }
  const utf8 = fixture.vectors.find((v) => v.stored.startsWith('{BLF-CRYPT}$2y$') && /[^\x00-\x7f]/.test(v.password));
  if (!utf8) throw new Error('no utf8 bcrypt vector');
  const x = utf8.stored.replace('$2y$', '$2x$');
  t.equal((await verify(x, utf8.password)).outcome, 'unsupported_scheme', '$2x$ bug cannot be reproduced for 8-bit input');
});

const B64_32 = Buffer.alloc(32, 7).toString('base64');
const SHA512_CHECKSUM = 'a'.repeat(86);

const BAD: [string, VerifyOutcome, string][] = [
  ['', 'malformed', ''],
  ['{SHA256', 'malformed', ''],
  ['{}abc', 'malformed', ''],
  ['{SHA 256}abc', 'malformed', ''],
  ['{"json":1}', 'malformed', ''],
  ['no-brace garbage', 'malformed', 'CRYPT'],
  ['{NOPE}x', 'unsupported_scheme', 'NOPE'],
  ['{SHA256.FOO}abc', 'unsupported_scheme', 'SHA256.FOO'],
  ['{CRAM-MD5}abc', 'unsupported_scheme', 'CRAM-MD5'],
  // plain and salted digests
  ['{SSHA256}', 'malformed', 'SSHA256'],
  ['{SSHA256}YWJj', 'malformed', 'SSHA256'],
  [`{SSHA256}${B64_32}`, 'malformed', 'SSHA256'],
  ['{SSHA}DWzDF36ja5GBhCF5ZVAgIi6hT+83PmK', 'malformed', 'SSHA'],
  ['{SSHA512}!!!!', 'malformed', 'SSHA512'],
  ['{SHA256}XohImNooBHFR0OVvjcYpJ3NgPQ1qq73WKhHvch0VQt', 'malformed', 'SHA256'],
  [`{SHA256}${Buffer.alloc(31).toString('base64')}`, 'malformed', 'SHA256'],
  ['{SHA1}W6ph5Mm5Pz8GgiULbPgzG37mj9g', 'malformed', 'SHA1'],
  ['{SHA512}', 'malformed', 'SHA512'],
  ['{PLAIN-MD5}5f4dcc3b5aa765d61d8327deb882cf9', 'malformed', 'PLAIN-MD5'],
  ['{PLAIN-MD5.HEX}zz4dcc3b5aa765d61d8327deb882cf99', 'malformed', 'PLAIN-MD5'],
  ['{PLAIN-MD4}8a9d093f14f8701df17732b2bb182c7', 'malformed', 'PLAIN-MD4'],
  ['{LDAP-MD5}X03MO1qnZdYdgyfeuILPmQ', 'malformed', 'LDAP-MD5'],
  ['{MD5}not-an-md5', 'malformed', 'MD5'],
  ['{PLAIN-TRUNC}password', 'malformed', 'PLAIN-TRUNC'],
  ['{PLAIN-TRUNC}-password', 'malformed', 'PLAIN-TRUNC'],
  ['{PLAIN-TRUNC}x8-password', 'malformed', 'PLAIN-TRUNC'],
  // crypt(3)
  ['{CRYPT}', 'malformed', 'CRYPT'],
  ['{CRYPT}abc', 'malformed', 'CRYPT'],
  ['{DES-CRYPT}ab!defghijklm', 'malformed', 'DES-CRYPT'],
  ['{DES-CRYPT}abJnggxhB/yWIxx', 'malformed', 'DES-CRYPT'],
  ['{CRYPT}$y$j9T$F5Jx5fExrKuJp1lWESlg3/$bVW7AsjgL99zJN1HbbLR6HYv62Ch8JwHMgxd50//p.C', 'unsupported_scheme', 'CRYPT'],
  ['{CRYPT}$9$whatever$abc', 'malformed', 'CRYPT'],
  ['{CRYPT}$6$salt$\u00e9', 'malformed', 'CRYPT'],
  ['{MD5-CRYPT}$1$salt$short', 'malformed', 'MD5-CRYPT'],
  ['{MD5-CRYPT}$1$123456789$o2n/JiO/h5VviOInWJ4OQ/', 'malformed', 'MD5-CRYPT'],
  ['{MD5-CRYPT}$1$p3sGJsFk$15nsnl5UbI8.JMgh2xucQ/$foo', 'malformed', 'MD5-CRYPT'],
  ['{SHA512-CRYPT}$6$salt$short', 'malformed', 'SHA512-CRYPT'],
  [`{SHA512-CRYPT}$6$rounds=999$salt$${SHA512_CHECKSUM}`, 'malformed', 'SHA512-CRYPT'],
  [`{SHA512-CRYPT}$6$rounds=01000$salt$${SHA512_CHECKSUM}`, 'malformed', 'SHA512-CRYPT'],
  [`{SHA512-CRYPT}$6$rounds=abc$salt$${SHA512_CHECKSUM}`, 'malformed', 'SHA512-CRYPT'],
  [`{SHA512-CRYPT}$6$rounds=1000001$salt$${SHA512_CHECKSUM}`, 'malformed', 'SHA512-CRYPT'],
  [`{SHA512-CRYPT}$6$seventeencharsalt$${SHA512_CHECKSUM}`, 'malformed', 'SHA512-CRYPT'],
  [`{SHA256-CRYPT}$5$salt$${SHA512_CHECKSUM}`, 'malformed', 'SHA256-CRYPT'],
  // bcrypt
  ['{BLF-CRYPT}$2y$03$pamx8T1LGs1kXzoKkCmJ3OKL6MVPwYXSbaCtK8Rs3mz.Aof71VCKq', 'malformed', 'BLF-CRYPT'],
  ['{BLF-CRYPT}$2y$32$pamx8T1LGs1kXzoKkCmJ3OKL6MVPwYXSbaCtK8Rs3mz.Aof71VCKq', 'malformed', 'BLF-CRYPT'],
  ['{BLF-CRYPT}$2y$31$pamx8T1LGs1kXzoKkCmJ3OKL6MVPwYXSbaCtK8Rs3mz.Aof71VCKq', 'malformed', 'BLF-CRYPT'],
  ['{BLF-CRYPT}$2y$05$pamx8T1LGs1kXzoKkCmJ3OKL6MVPwYXSbaCtK8Rs3mz.Aof71VCK', 'malformed', 'BLF-CRYPT'],
  ['{BLF-CRYPT}$2z$05$pamx8T1LGs1kXzoKkCmJ3OKL6MVPwYXSbaCtK8Rs3mz.Aof71VCKq', 'malformed', 'BLF-CRYPT'],
  ['{BLF-CRYPT}$2$05$pamx8T1LGs1kXzoKkCmJ3OKL6MVPwYXSbaCtK8Rs3mz.Aof71VCKq', 'unsupported_scheme', 'BLF-CRYPT'],
  // argon2
  ['{ARGON2ID}$argon2id$v=19$m=garbage', 'malformed', 'ARGON2ID'],
  ['{ARGON2ID}$argon2id$v=19$m=65536,t=3,p=1$c2FsdA$aGFzaGhhc2hoYXNoaGFzaA', 'malformed', 'ARGON2ID'],
  ['{ARGON2ID}$argon2id$v=19$m=65536,t=0,p=1$c2FsdHNhbHRzYWx0$aGFzaGhhc2hoYXNoaGFzaA', 'malformed', 'ARGON2ID'],
  ['{ARGON2ID}$argon2id$v=19$m=4294967295,t=3,p=1$c2FsdHNhbHRzYWx0$aGFzaGhhc2hoYXNoaGFzaA', 'malformed', 'ARGON2ID'],
  ['{ARGON2ID}$argon2id$v=19$m=65536,t=1000,p=1$c2FsdHNhbHRzYWx0$aGFzaGhhc2hoYXNoaGFzaA', 'malformed', 'ARGON2ID'],
  ['{ARGON2ID}$argon2id$v=19$m=65536,t=3,p=255$c2FsdHNhbHRzYWx0$aGFzaGhhc2hoYXNoaGFzaA', 'malformed', 'ARGON2ID'],
  ['{ARGON2ID}$argon2id$v=18$m=65536,t=3,p=1$c2FsdHNhbHRzYWx0$aGFzaGhhc2hoYXNoaGFzaA', 'malformed', 'ARGON2ID'],
  ['{ARGON2I}$2y$05$pamx8T1LGs1kXzoKkCmJ3OKL6MVPwYXSbaCtK8Rs3mz.Aof71VCKq', 'malformed', 'ARGON2I'],
  ['{ARGON2ID}$argon2d$v=19$m=65536,t=3,p=1$c2FsdHNhbHRzYWx0$aGFzaGhhc2hoYXNoaGFzaA', 'unsupported_scheme', 'ARGON2ID'],
  ['{ARGON2ID}', 'malformed', 'ARGON2ID'],
  // PBKDF2 (Dovecot) and PBKDF2-SHA512 (FreeIPA)
  ['{PBKDF2}1$salt$5000$49b6dea8dd9d836441b34437132b645280d06f16', 'malformed', 'PBKDF2'],
  ['{PBKDF2}$1$salt$0$49b6dea8dd9d836441b34437132b645280d06f16', 'malformed', 'PBKDF2'],
  ['{PBKDF2}$1$salt$99999999999$49b6dea8dd9d836441b34437132b645280d06f16', 'malformed', 'PBKDF2'],
  ['{PBKDF2}$1$salt$5000$49b6dea8dd9d836441b34437132b645280d06f1', 'malformed', 'PBKDF2'],
  ['{PBKDF2}$1$salt$5000$49b6dea8dd9d836441b34437132b645280d06f16$x', 'malformed', 'PBKDF2'],
  ['{PBKDF2-SHA512}10000$c2FsdA==', 'malformed', 'PBKDF2-SHA512'],
  [`{PBKDF2-SHA512}abc$c2FsdA==$${Buffer.alloc(64).toString('base64')}`, 'malformed', 'PBKDF2-SHA512'],
  [`{PBKDF2-SHA512}10000$!!$${Buffer.alloc(64).toString('base64')}`, 'malformed', 'PBKDF2-SHA512'],
  [`{PBKDF2-SHA512}10000$$${Buffer.alloc(64).toString('base64')}`, 'malformed', 'PBKDF2-SHA512'],
  ['{PBKDF2-SHA512}10000$c2FsdHNhbHQ=$aGFzaA==', 'malformed', 'PBKDF2-SHA512'],
  [`{PBKDF2-SHA512}99999999999$c2FsdA==$${Buffer.alloc(64).toString('base64')}`, 'malformed', 'PBKDF2-SHA512'],
];

t.test('malformed and unsupported values: never match, never throw, never echo the hash', async (t) => {
  for (const [stored, outcome, scheme] of BAD) {
    for (const password of ['password', '', 'hunter2-secret']) {
      const result = await verify(stored, password);
      t.equal(result.outcome, outcome, `${JSON.stringify(stored)} → ${outcome}`);
      t.equal(result.scheme, scheme, `${JSON.stringify(stored)} scheme`);
      t.type(result.reason, 'string', 'has a reason');
      const payload = stored.slice(stored.indexOf('}') + 1);
      if (payload.length >= 4) t.notOk(result.reason?.includes(payload), 'reason does not quote the payload');
      t.notOk(result.reason?.includes('hunter2'), 'reason does not quote the password');
    }
  }
});

t.test('verify is total over odd inputs', async (t) => {
  t.equal((await verify(undefined as unknown as string, 'x')).outcome, 'malformed');
  t.equal((await verify('{PLAIN}x', null as unknown as string)).outcome, 'malformed');
  t.equal((await verify('{PLAIN}\u0000', '\u0000')).outcome, 'match');
  t.equal((await verify('{PLAIN}\ud800', '\ud800')).outcome, 'match', 'lone surrogates encode the same way on both sides');
  t.equal((await verify('{CLEAR}', '')).outcome, 'match', 'empty password is the caller’s policy');
});

t.test('PLAIN-TRUNC follows Dovecot byte for byte', async (t) => {
  const cases: [string, string, VerifyOutcome][] = [
    ['{PLAIN-TRUNC}4-pass', 'password', 'match'],
    ['{PLAIN-TRUNC}4-pass', 'pass', 'match'],
    ['{PLAIN-TRUNC}4-pass', 'pas', 'mismatch'],
    ['{PLAIN-TRUNC}5-pass', 'pass', 'match'],
    ['{PLAIN-TRUNC}5-pass', 'passw', 'mismatch'],
    ['{PLAIN-TRUNC}0-', 'anything', 'match'],
  ];
  for (const [stored, password, outcome] of cases) t.equal((await verify(stored, password)).outcome, outcome, `${stored} / ${password}`);
});

t.test('hostile work factors are refused before any hashing', async (t) => {
  const hostile = [
    `{SHA512-CRYPT}$6$rounds=999999999$saltsalt$${SHA512_CHECKSUM}`,
    `$6$rounds=999999999$saltsalt$${SHA512_CHECKSUM}`,
    '{BLF-CRYPT}$2y$31$pamx8T1LGs1kXzoKkCmJ3OKL6MVPwYXSbaCtK8Rs3mz.Aof71VCKq',
    '{PBKDF2}$1$salt$4294967295$49b6dea8dd9d836441b34437132b645280d06f16',
    '{ARGON2ID}$argon2id$v=19$m=4294967295,t=4294967295,p=255$c2FsdHNhbHRzYWx0$aGFzaGhhc2hoYXNoaGFzaA',
  ];
  for (const stored of hostile) {
    const result = await verify(stored, 'password');
    t.equal(result.outcome, 'malformed', stored.slice(0, 30));
    // The reason names the cap, so the parameters were rejected before any work ran.
    t.match(result.reason, /too high/);
  }
});

t.test('SHA-crypt on the hash pool leaves the event loop free while it works (issue 16)', async (t) => {
  // Behaviour, not timing: a chain of setImmediate callbacks only advances while
  // the loop is free, so it must have run many times before the hash finished.
  const pool = createHashPool(1);
  t.teardown(() => pool.close());
  let turns = 0;
  let running = true;
  const spin = (): void => {
    if (!running) return;
    turns++;
    setImmediate(spin);
  };
  setImmediate(spin);
  const result = await verify(`{SHA512-CRYPT}$6$rounds=300000$saltsalt$${SHA512_CHECKSUM}`, 'password', { shaCrypt: pool.shaCrypt });
  running = false;
  t.equal(result.outcome, 'mismatch');
  t.ok(turns >= 100, `the event loop turned ${turns} times during 300,000 rounds`);
});

t.test('passwords beyond the crypt(3) limit cannot match a crypt hash', async (t) => {
  const result = await verify(byScheme('SHA512-CRYPT').stored, 'p'.repeat(513));
  t.equal(result.outcome, 'mismatch');
  t.equal(result.scheme, 'SHA512-CRYPT');
});

t.test('parseStored', async (t) => {
  t.same(parseStored('{SSHA256}abc'), { scheme: 'SSHA256', payload: 'abc' });
  t.same(parseStored('{sha256.HEX}abc'), { scheme: 'SHA256', encoding: 'hex', payload: 'abc' });
  t.same(parseStored('{Plain-MD5.b64}abc'), { scheme: 'PLAIN-MD5', encoding: 'b64', payload: 'abc' });
  t.same(parseStored('{PLAIN-MD5.base64}abc'), { scheme: 'PLAIN-MD5', encoding: 'b64', payload: 'abc' });
  t.same(parseStored('{SHA256.foo}abc'), { scheme: 'SHA256.FOO', payload: 'abc' });
  t.same(parseStored('{CLEAR}'), { scheme: 'CLEAR', payload: '' });
  t.same(parseStored('{PLAIN}a}b'), { scheme: 'PLAIN', payload: 'a}b' });
  t.same(parseStored('$6$salt$x'), { scheme: 'CRYPT', payload: '$6$salt$x' });
  t.same(parseStored('$6$salt$x', 'sha512-crypt'), { scheme: 'SHA512-CRYPT', payload: '$6$salt$x' });
  t.same(parseStored('$1$salt$x', 'PLAIN'), { scheme: 'MD5-CRYPT', payload: '$1$salt$x' });
  t.equal(parseStored(''), null);
  t.equal(parseStored('{SHA256'), null);
  t.equal(parseStored('{}x'), null);
  t.equal(parseStored('{a b}x'), null);
});

t.test('schemeOf', async (t) => {
  t.equal(schemeOf('{ssha256}abc'), 'SSHA256');
  t.equal(schemeOf('{CRYPT}$2y$05$pamx8T1LGs1kXzoKkCmJ3OKL6MVPwYXSbaCtK8Rs3mz.Aof71VCKq'), 'BLF-CRYPT');
  t.equal(schemeOf('{CRYPT}garbage'), 'CRYPT');
  t.equal(schemeOf('{BLF-CRYPT}$1$p3sGJsFk$15nsnl5UbI8.JMgh2xucQ/'), 'BLF-CRYPT', 'a format the label refuses is not reported');
  t.equal(schemeOf('{MD5}$1$p3sGJsFk$15nsnl5UbI8.JMgh2xucQ/'), 'MD5-CRYPT');
  t.equal(schemeOf('{MD5}garbage'), 'MD5');
  t.equal(schemeOf('{ARGON2I}$argon2id$v=19$m=65536,t=3,p=1$c2FsdHNhbHRzYWx0$aGFzaGhhc2hoYXNoaGFzaA'), 'ARGON2ID');
  t.equal(schemeOf('{SHA256-CRYPT.b64}JDYkYWJjJA=='), 'SHA512-CRYPT', 'encoded payloads are decoded first');
  t.equal(schemeOf('{MD5}5f4dcc3b5aa765d61d8327deb882cf99'), 'PLAIN-MD5');
  t.equal(schemeOf('$6$salt$x'), 'SHA512-CRYPT');
  t.equal(schemeOf('{NOPE}x'), null);
  t.equal(schemeOf('{broken'), null);
  t.equal(schemeOf(''), null);
});

t.test('listSchemes', async (t) => {
  const schemes = listSchemes();
  const names = schemes.map((s) => s.name);
  t.same(new Set(names), new Set([
    'ARGON2I', 'ARGON2ID', 'BLF-CRYPT', 'CRYPT', 'DES-CRYPT', 'MD5-CRYPT', 'MD5', 'SHA256-CRYPT', 'SHA512-CRYPT',
    'CLEAR', 'CLEARTEXT', 'PLAIN', 'LDAP-MD5', 'PBKDF2', 'PBKDF2-SHA512', 'PLAIN-MD4', 'PLAIN-MD5', 'PLAIN-TRUNC',
    'SHA', 'SHA1', 'SHA256', 'SHA512', 'SMD5', 'SSHA', 'SSHA256', 'SSHA512',
  ]));
  t.equal(names.length, 26);
  t.same(schemes.filter((s) => s.hash).map((s) => s.name).sort(),
    ['ARGON2I', 'ARGON2ID', 'BLF-CRYPT', 'SHA256-CRYPT', 'SHA512-CRYPT', 'SSHA256', 'SSHA512']);
  t.same(schemes.filter((s) => !s.weak).map((s) => s.name).sort(),
    ['ARGON2I', 'ARGON2ID', 'BLF-CRYPT', 'PBKDF2', 'PBKDF2-SHA512', 'SHA256-CRYPT', 'SHA512-CRYPT']);
  t.ok(schemes.every((s) => s.verify === true));
  for (const { name } of schemes) {
    t.not((await verify(`{${name}}`, 'x')).outcome, 'unsupported_scheme', `${name} is verifiable`);
  }
});

t.test('isSchemeAllowed', async (t) => {
  const cases: [string, string[], boolean][] = [
    ['BLF-CRYPT', ['BLF-CRYPT'], true],
    ['blf-crypt', ['BLF-CRYPT'], true],
    ['BLF-CRYPT', ['blf-crypt'], true],
    ['PBKDF2', ['PBKDF2*'], true],
    ['PBKDF2-SHA512', ['pbkdf2*'], true],
    ['PBKDF', ['PBKDF2*'], false],
    ['SHA512-CRYPT', ['SHA*'], true],
    ['SSHA', ['SHA*'], false],
    ['ANY', ['*'], true],
    ['SHA1', ['SHA'], false],
    ['SHA', ['S*A'], false],
    ['', ['*'], false],
    ['BLF-CRYPT', [], false],
  ];
  for (const [scheme, allowed, expected] of cases) t.equal(isSchemeAllowed(scheme, allowed), expected, `${scheme} in ${allowed.join(',')}`);
});

const HASHABLE: [HashScheme, RegExp][] = [
  ['BLF-CRYPT', /^\{BLF-CRYPT\}\$2y\$10\$[./A-Za-z0-9]{53}$/],
  ['ARGON2ID', /^\{ARGON2ID\}\$argon2id\$v=19\$m=65536,t=3,p=1\$[A-Za-z0-9+/]{22}\$[A-Za-z0-9+/]{43}$/],
  ['ARGON2I', /^\{ARGON2I\}\$argon2i\$v=19\$m=32768,t=4,p=1\$[A-Za-z0-9+/]{22}\$[A-Za-z0-9+/]{43}$/],
  ['SHA512-CRYPT', /^\{SHA512-CRYPT\}\$6\$[./A-Za-z0-9]{16}\$[./A-Za-z0-9]{86}$/],
  ['SHA256-CRYPT', /^\{SHA256-CRYPT\}\$5\$[./A-Za-z0-9]{16}\$[./A-Za-z0-9]{43}$/],
  ['SSHA256', /^\{SSHA256\}[A-Za-z0-9+/]{64}$/],
  ['SSHA512', /^\{SSHA512\}[A-Za-z0-9+/]{107}=$/],
];

t.test('hash() writes Dovecot-shaped values that verify() accepts', async (t) => {
  for (const [scheme, shape] of HASHABLE) {
    for (const password of ['password', 'Grüße, 世界! 🔑', '']) {
      const stored = await hash(scheme, password);
      t.match(stored, shape, `${scheme} shape`);
      t.same(await verify(stored, password), { outcome: 'match', scheme }, `${scheme} round-trip`);
      t.equal((await verify(stored, `${password}!`)).outcome, 'mismatch');
    }
    t.not(await hash(scheme, 'password'), await hash(scheme, 'password'), `${scheme} is salted`);
  }
  t.match(await hash('blf-crypt', 'password', { bcryptCost: 4 }), /^\{BLF-CRYPT\}\$2y\$04\$/);
  t.match(await hash('Sha512-Crypt', 'password'), /^\{SHA512-CRYPT\}/);
});

t.test('hash() refuses what it must not write', async (t) => {
  for (const scheme of ['PLAIN', 'SHA256', 'SSHA', 'MD5-CRYPT', 'CRYPT', 'PBKDF2', 'NOPE', '', 'SSHA256.HEX']) {
    await t.rejects(hash(scheme, 'password'), { name: 'MailauthError', code: 'ERR_HASH_UNSUPPORTED' }, scheme);
  }
  for (const bcryptCost of [3, 19, 32, 10.5, Number.NaN]) {
    await t.rejects(hash('BLF-CRYPT', 'password', { bcryptCost }), { name: 'MailauthError', code: 'ERR_INVALID_INPUT' }, `cost ${bcryptCost}`);
  }
});
