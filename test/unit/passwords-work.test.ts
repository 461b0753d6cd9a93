import { readFileSync } from 'node:fs';
import t from 'tap';
import {
  IDP_WORK_CAPS,
  hash,
  listSchemes,
  readHashWork,
  schemeOf,
  verify,
  workExcesses,
  workOverCaps,
  HARD_WORK_CAPS,
  type WorkCaps,
} from '../../src/passwords/index.js';
import {
  MAX_ARGON2_MEMORY_KIB,
  MAX_ARGON2_PARALLELISM,
  MAX_ARGON2_TIME_COST,
  MAX_BCRYPT_COST,
  MAX_PBKDF2_ITERATIONS,
  MAX_SHA_CRYPT_ROUNDS,
} from '../../src/passwords/limits.js';

// Well-formed hashes built by hand: none is ever hashed here, so any cost is cheap to test.
const bcrypt = (cost: number, variant = 'y'): string => `$2${variant}$${String(cost).padStart(2, '0')}$${'abcdefghijklmnopqrstuv'}${'A'.repeat(31)}`;
const argon2 = (m: number, tc: number, p: number, variant = 'argon2id'): string => `$${variant}$v=19$m=${m},t=${tc},p=${p}$c2FsdHNhbHRzYWx0c2FsdA$aGFzaGhhc2hoYXNoaGFzaGhhc2hoYXNoaGFzaGhhc2g`;
const sha512 = (rounds?: number): string => `$6$${rounds === undefined ? '' : `rounds=${rounds}$`}saltsalt$${'x'.repeat(86)}`;
const sha256 = (rounds?: number): string => `$5$${rounds === undefined ? '' : `rounds=${rounds}$`}saltsalt$${'x'.repeat(43)}`;
const pbkdf2 = (rounds: number): string => `{PBKDF2}$1$saltsalt$${rounds}$${'ab'.repeat(20)}`;
const pbkdf2Sha512 = (iterations: number): string => `{PBKDF2-SHA512}${iterations}$c2FsdHNhbHQ=$${Buffer.alloc(64, 1).toString('base64')}`;
const hexLabel = (scheme: string, text: string): string => `{${scheme}.HEX}${Buffer.from(text).toString('hex')}`;

t.test('readHashWork: the parameters of every tunable family, as the format that would run', async (t) => {
  const cases: [string, string, Record<string, number>][] = [
    [`{BLF-CRYPT}${bcrypt(12)}`, 'BLF-CRYPT', { bcryptCost: 12 }],
    [`{BLF-CRYPT}${bcrypt(5, 'a')}`, 'BLF-CRYPT', { bcryptCost: 5 }],
    [`{BLF-CRYPT}${bcrypt(31, 'b')}`, 'BLF-CRYPT', { bcryptCost: 31 }],
    [`{CRYPT}${bcrypt(17)}`, 'BLF-CRYPT', { bcryptCost: 17 }],
    [bcrypt(17), 'BLF-CRYPT', { bcryptCost: 17 }],
    [hexLabel('BLF-CRYPT', bcrypt(17)), 'BLF-CRYPT', { bcryptCost: 17 }],
    [`{ARGON2ID}${argon2(65536, 3, 1)}`, 'ARGON2ID', { argon2MemoryKib: 65536, argon2TimeCost: 3, argon2Parallelism: 1 }],
    [`{ARGON2I}${argon2(32768, 4, 2, 'argon2i')}`, 'ARGON2I', { argon2MemoryKib: 32768, argon2TimeCost: 4, argon2Parallelism: 2 }],
    [`{ARGON2I}${argon2(1048576, 1, 1)}`, 'ARGON2ID', { argon2MemoryKib: 1048576, argon2TimeCost: 1, argon2Parallelism: 1 }],
    [`{ARGON2ID}${argon2(4096, 2, 1).replace('v=19$', '')}`, 'ARGON2ID', { argon2MemoryKib: 4096, argon2TimeCost: 2, argon2Parallelism: 1 }],
    [`{SHA512-CRYPT}${sha512()}`, 'SHA512-CRYPT', { shaCryptRounds: 5000 }],
    [`{SHA512-CRYPT}${sha512(656000)}`, 'SHA512-CRYPT', { shaCryptRounds: 656000 }],
    [`{SHA512-CRYPT}${sha256(200000)}`, 'SHA256-CRYPT', { shaCryptRounds: 200000 }],
    [`{SHA256-CRYPT}${sha256()}`, 'SHA256-CRYPT', { shaCryptRounds: 5000 }],
    [`{CRYPT}${sha512(1000)}`, 'SHA512-CRYPT', { shaCryptRounds: 1000 }],
    [pbkdf2(5000), 'PBKDF2', { pbkdf2Iterations: 5000 }],
    [`{pbkdf2}$1$s$2000000$${'ab'.repeat(20)}`, 'PBKDF2', { pbkdf2Iterations: 2000000 }],
    [pbkdf2Sha512(100000), 'PBKDF2-SHA512', { pbkdf2Iterations: 100000 }],
  ];
  for (const [stored, scheme, work] of cases) {
    t.same(readHashWork(stored), { scheme, work }, `${scheme}: ${JSON.stringify(work)}`);
    t.equal(schemeOf(stored), scheme, `${scheme}: the scheme verify() would run`);
  }
});

t.test('readHashWork: fixed-work formats have no parameters', async (t) => {
  const cases: [string, string][] = [
    [`{SSHA256}${Buffer.alloc(40, 7).toString('base64')}`, 'SSHA256'],
    ['{PLAIN}secret', 'PLAIN'],
    ['{MD5-CRYPT}$1$saltsalt$abcdefghijklmnopqrstuv', 'MD5-CRYPT'],
    ['{CRYPT}abJnggxhB/yWI', 'DES-CRYPT'],
    ['{PLAIN-MD5}5f4dcc3b5aa765d61d8327deb882cf99', 'PLAIN-MD5'],
  ];
  for (const [stored, scheme] of cases) {
    t.same(readHashWork(stored), { scheme, work: {} }, scheme);
    t.equal(workOverCaps(stored, IDP_WORK_CAPS), null, `${scheme}: never over a cap`);
  }
});

t.test('workOverCaps: at each IdP cap passes, one above is named with its cap', async (t) => {
  const c = IDP_WORK_CAPS;
  const cases: [string, (n: number) => string, number, string, string, string][] = [
    ['bcrypt', (n) => `{BLF-CRYPT}${bcrypt(n)}`, c.bcryptCost, 'bcryptCost', 'bcrypt cost', 'BLF-CRYPT'],
    ['bcrypt under {CRYPT}', (n) => `{CRYPT}${bcrypt(n, 'b')}`, c.bcryptCost, 'bcryptCost', 'bcrypt cost', 'BLF-CRYPT'],
    ['argon2 memory', (n) => `{ARGON2ID}${argon2(n, 1, 1)}`, c.argon2MemoryKib, 'argon2MemoryKib', 'argon2 memory', 'ARGON2ID'],
    ['argon2 time', (n) => `{ARGON2ID}${argon2(65536, n, 1)}`, c.argon2TimeCost, 'argon2TimeCost', 'argon2 time cost', 'ARGON2ID'],
    ['argon2 parallelism', (n) => `{ARGON2I}${argon2(65536, 3, n, 'argon2i')}`, c.argon2Parallelism, 'argon2Parallelism', 'argon2 parallelism', 'ARGON2I'],
    ['PBKDF2', pbkdf2, c.pbkdf2Iterations, 'pbkdf2Iterations', 'PBKDF2 iterations', 'PBKDF2'],
    ['PBKDF2-SHA512', pbkdf2Sha512, c.pbkdf2Iterations, 'pbkdf2Iterations', 'PBKDF2 iterations', 'PBKDF2-SHA512'],
    ['SHA512-CRYPT', (n) => `{SHA512-CRYPT}${sha512(n)}`, c.shaCryptRounds, 'shaCryptRounds', 'SHA-crypt rounds', 'SHA512-CRYPT'],
    ['SHA256-CRYPT', (n) => `{SHA256-CRYPT}${sha256(n)}`, c.shaCryptRounds, 'shaCryptRounds', 'SHA-crypt rounds', 'SHA256-CRYPT'],
  ];
  for (const [name, make, cap, parameter, label, scheme] of cases) {
    t.equal(workOverCaps(make(cap), c), null, `${name} at the cap (${cap})`);
    t.match(workOverCaps(make(cap + 1), c), { scheme, parameter, label, value: cap + 1, cap }, `${name} above the cap`);
  }
  t.same(workOverCaps(`{ARGON2ID}${argon2(300000, 3, 1)}`, c)?.unit, ' KiB', 'argon2 memory carries its unit');
  t.equal(workOverCaps(`{BLF-CRYPT}${bcrypt(14)}`, c)?.unit, '', 'counts have none');
  t.equal(
    workOverCaps(`{ARGON2ID}${argon2(1048576, 40, 16)}`, c)?.parameter,
    'argon2MemoryKib',
    'several over: the first (memory) is reported',
  );
  t.equal(workOverCaps(`{SHA512-CRYPT}${sha512()}`, { ...c, shaCryptRounds: 4999 })?.value, 5000, 'no rounds= counts as 5000');
});

t.test('workExcesses (mailauth doctor, issue 16): every parameter over its cap, in order; none for unreadable values', async (t) => {
  const c = IDP_WORK_CAPS;
  t.same(
    workExcesses(`{ARGON2ID}${argon2(1048576, 40, 16)}`, c).map((e) => [e.parameter, e.value, e.cap]),
    [['argon2MemoryKib', 1048576, c.argon2MemoryKib], ['argon2TimeCost', 40, c.argon2TimeCost], ['argon2Parallelism', 16, c.argon2Parallelism]],
    'all three argon2 parameters',
  );
  t.same(workExcesses(`{BLF-CRYPT}${bcrypt(c.bcryptCost)}`, c), [], 'at the cap: none');
  t.same(workExcesses('{BLF-CRYPT}not-a-hash', c), [], 'unreadable: none (verify() refuses it as malformed)');
  t.same(workExcesses('{SSHA256}abc', c), [], 'fixed-work schemes: none');
  const stored = `{SHA512-CRYPT}${sha512(200_000)}`;
  t.same(workOverCaps(stored, c), workExcesses(stored, c)[0], 'workOverCaps is the first of them');
  t.same(
    Object.values(HARD_WORK_CAPS),
    Object.values({ bcryptCost: MAX_BCRYPT_COST, argon2MemoryKib: MAX_ARGON2_MEMORY_KIB, argon2TimeCost: MAX_ARGON2_TIME_COST, argon2Parallelism: MAX_ARGON2_PARALLELISM, pbkdf2Iterations: MAX_PBKDF2_ITERATIONS, shaCryptRounds: MAX_SHA_CRYPT_ROUNDS }),
    'the hard caps are the limits verify() reads at all',
  );
});

t.test('workOverCaps uses the caps it is given', async (t) => {
  const stored: WorkCaps = {
    bcryptCost: MAX_BCRYPT_COST,
    argon2MemoryKib: MAX_ARGON2_MEMORY_KIB,
    argon2TimeCost: MAX_ARGON2_TIME_COST,
    argon2Parallelism: MAX_ARGON2_PARALLELISM,
    pbkdf2Iterations: MAX_PBKDF2_ITERATIONS,
    shaCryptRounds: MAX_SHA_CRYPT_ROUNDS,
  };
  for (const key of Object.keys(stored) as (keyof WorkCaps)[]) {
    t.ok(IDP_WORK_CAPS[key] < stored[key], `IdP ${key} is tighter than the database cap`);
  }
  t.equal(workOverCaps(`{BLF-CRYPT}${bcrypt(17)}`, stored), null, 'cost 17 is within the database caps');
  t.match(workOverCaps(`{BLF-CRYPT}${bcrypt(17)}`, IDP_WORK_CAPS), { parameter: 'bcryptCost', value: 17, cap: 13 }, 'but not within the IdP caps');
});

t.test('unreadable values: null, and verify() refuses them without hashing', async (t) => {
  const cases: [string, string][] = [
    ['', 'empty'],
    ['{BLF-CRYPT', 'unterminated label'],
    ['{NOPE}abc', 'unknown scheme'],
    ['{CRYPT}$9$whatever', 'no crypt format'],
    [`{BLF-CRYPT}$2y$7$${'a'.repeat(53)}`, 'one-digit bcrypt cost'],
    [`{BLF-CRYPT}$2z$17$${'a'.repeat(53)}`, 'unknown bcrypt variant'],
    [`{BLF-CRYPT}${bcrypt(17)}\u00e9`, 'non-ASCII payload'],
    [`{ARGON2ID}${argon2(1048576, 3, 1, 'argon2d')}`, 'argon2d'],
    [`{ARGON2ID}$argon2id$v=19$m=x,t=3,p=1$c2FsdA$aGFzaA`, 'argon2 memory not a number'],
    [`{ARGON2ID}$argon2id$v=19$t=3,m=65536,p=1$c2FsdA$aGFzaA`, 'argon2 parameters out of order'],
    [`{ARGON2ID}$argon2id$v=19$m=99999999999,t=3,p=1$c2FsdA$aGFzaA`, 'argon2 memory of 11 digits'],
    [`{SHA512-CRYPT}$6$rounds=lots$saltsalt$${'x'.repeat(86)}`, 'SHA-crypt rounds not a number'],
    [`{SHA512-CRYPT}$6$rounds=99999999999$saltsalt$${'x'.repeat(86)}`, 'SHA-crypt rounds of 11 digits'],
    [`{PBKDF2}$1$salt$many$${'ab'.repeat(20)}`, 'PBKDF2 rounds not a number'],
    [`{PBKDF2}salt$5000000$${'ab'.repeat(20)}`, 'PBKDF2 without $1$'],
    [`{PBKDF2-SHA512}many$c2FsdA==$${'A'.repeat(88)}`, 'PBKDF2-SHA512 iterations not a number'],
  ];
  for (const [stored, name] of cases) {
    t.equal(readHashWork(stored), null, `${name}: nothing read`);
    t.equal(workOverCaps(stored, IDP_WORK_CAPS), null, `${name}: not over a cap`);
    // The reader may only give up where verify() gives up too, before any work.
    const r = await verify(stored, 'pw');
    t.ok(r.outcome === 'malformed' || r.outcome === 'unsupported_scheme', `${name}: verify answers ${r.outcome}`);
  }
  t.equal(readHashWork(42 as unknown as string), null, 'not a string');
});

t.test('every vector from real tools is read as verify() reads it; only the 123456-round one is over the IdP caps', async (t) => {
  const { vectors } = JSON.parse(readFileSync(new URL('../fixtures/passwords/vectors.json', import.meta.url), 'utf8')) as { vectors: { stored: string }[] };
  const over: string[] = [];
  for (const v of vectors) {
    const read = readHashWork(v.stored);
    if (read === null || read.scheme !== schemeOf(v.stored)) t.fail(`${schemeOf(v.stored)} vector read as ${read?.scheme ?? 'nothing'}`);
    const e = workOverCaps(v.stored, IDP_WORK_CAPS);
    if (e !== null) over.push(`${e.scheme} ${e.label} ${e.value}`);
  }
  t.same(over, ['SHA512-CRYPT SHA-crypt rounds 123456']);
});

t.test('what mailauth pw writes by default is within the IdP caps', async (t) => {
  const writable = listSchemes().filter((s) => s.hash).map((s) => s.name);
  t.ok(writable.length >= 7, 'every scheme mailauth pw offers');
  for (const scheme of writable) {
    // No options: mailauth pw without -r (bcrypt cost 10; argon2 and SHA-crypt have no knobs).
    const stored = await hash(scheme, 'pw');
    t.equal(workOverCaps(stored, IDP_WORK_CAPS), null, `${scheme} default`);
    t.not(readHashWork(stored), null, `${scheme} default is readable`);
  }
});
