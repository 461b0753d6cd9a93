/** Pure parts of src/provisioning: template attribute validation, mailcow's attribute hash, addresses, app passwords. */
import { createHash } from 'node:crypto';
import t from 'tap';
import {
  APP_PASSWORD_ALPHABET,
  TEMPLATE_KEYS,
  checkDomainLimits,
  generateAppPassword,
  normalizeAddress,
  normalizeDomain,
  parseProtocols,
  parseTemplateSetting,
  phpJsonEncode,
  phpJsonString,
  templateAttributeHash,
  validateTemplateAttributes,
} from '../../src/provisioning/index.js';
import { DEFAULT_MAILBOX_TEMPLATE } from '../../src/db/index.js';

const sha1 = (s: string): string => createHash('sha1').update(s, 'utf8').digest('hex');

t.test('validateTemplateAttributes accepts mailcow templates in both flag spellings', async (t) => {
  t.same(validateTemplateAttributes(DEFAULT_MAILBOX_TEMPLATE), []);
  // mailcow's init_db writes the Default template with integer flags.
  t.same(validateTemplateAttributes({ quota: 0, active: 1, force_pw_update: 0, imap_access: 1, acl_syncjobs: 0, acl_pw_reset: 1, tags: [] }), []);
  t.same(validateTemplateAttributes({ rl_value: '10', rl_frame: 'h', tagged_mail_handler: 'subfolder', active: '2' }), []);
  t.same(validateTemplateAttributes({ rl_value: 10 }), []);
});

t.test('validateTemplateAttributes names every problem', async (t) => {
  const cases: [Record<string, unknown>, RegExp][] = [
    [{ imap_access: 'yes' }, /^imap_access: must be "0" or "1", got "yes"$/],
    [{ imap_access: 2 }, /^imap_access: must be "0" or "1"/],
    [{ quota: -1 }, /^quota: must be a non-negative integer number of bytes/],
    [{ quota: 1.5 }, /^quota: /],
    [{ quota: '1024' }, /^quota: /],
    [{ active: '3' }, /^active: must be "0" \(disabled\), "1" \(active\) or "2"/],
    [{ tags: 'a,b' }, /^tags: must be an array of non-empty strings/],
    [{ tags: ['a', 3] }, /^tags: /],
    [{ quarantine_notification: 'monthly' }, /^quarantine_notification: must be one of never, hourly, daily, weekly/],
    [{ quarantine_category: 'drop' }, /^quarantine_category: must be one of add_header, reject, all/],
    [{ rl_frame: 'y' }, /^rl_frame: must be one of s, m, h, d/],
    [{ rl_value: '0' }, /^rl_value: must be "" \(no limit\) or a positive integer/],
    [{ rl_value: -5 }, /^rl_value: /],
    [{ acl_spam_alias: true }, /^acl_spam_alias: must be "0" or "1"/],
  ];
  for (const [attrs, re] of cases) {
    const problems = validateTemplateAttributes(attrs);
    t.equal(problems.length, 1, JSON.stringify(attrs));
    t.match(problems[0], re);
  }
  const two = validateTemplateAttributes({ imap_access: 'x', quota: -1 });
  t.equal(two.length, 2, 'all problems reported at once');
});

t.test('unknown keys are rejected with the list of known ones', async (t) => {
  const problems = validateTemplateAttributes({ imap_acess: '1', colour: 'red', pop3_access: '1' });
  t.equal(problems.length, 1);
  t.match(problems[0], /unknown attributes "imap_acess", "colour"; known attributes: quota, active, tags, force_pw_update/);
  for (const k of TEMPLATE_KEYS) t.ok(problems[0]?.includes(k), `lists ${k}`);
  t.same(validateTemplateAttributes({ colour: 'red' }, { allowUnknown: true }), [], 'a newer mailcow may add keys');
  t.same(validateTemplateAttributes([]), ['template attributes must be a JSON object']);
  t.same(validateTemplateAttributes(null), ['template attributes must be a JSON object']);
});

t.test('parseTemplateSetting coerces per key', async (t) => {
  t.same(parseTemplateSetting('quota=1073741824'), { key: 'quota', value: 1073741824 });
  t.same(parseTemplateSetting('tags=staff, berlin'), { key: 'tags', value: ['staff', 'berlin'] });
  t.same(parseTemplateSetting('tags='), { key: 'tags', value: [] });
  t.same(parseTemplateSetting('imap_access=0'), { key: 'imap_access', value: '0' });
  t.same(parseTemplateSetting('rl_value='), { key: 'rl_value', value: '' });
  t.match(parseTemplateSetting('imap_acess=1'), /^unknown attribute "imap_acess"; known attributes: quota, /);
  t.match(parseTemplateSetting('imap_access'), /is not key=value/);
  t.match(parseTemplateSetting('=1'), /is not key=value/);
});

t.test('phpJsonString escapes like PHP json_encode', async (t) => {
  // Expected strings written by hand from PHP's documented default escaping.
  t.equal(phpJsonString('{"quota":0}'), '"{\\"quota\\":0}"');
  t.equal(phpJsonString('a/b'), '"a\\/b"');
  t.equal(phpJsonString('é'), '"\\u00e9"');
  t.equal(phpJsonString('😀'), '"\\ud83d\\ude00"');
  t.equal(phpJsonString('tab\there\nnl\u0001'), '"tab\\there\\nnl\\u0001"');
  t.equal(phpJsonString('back\\slash'), '"back\\\\slash"');
  t.equal(phpJsonEncode({ tags: [], quota: 0, active: '1', x: {} }), '{"tags":[],"quota":0,"active":"1","x":[]}');
  t.equal(phpJsonEncode({ tags: ['a/b', 'ü'] }), '{"tags":["a\\/b","\\u00fc"]}');
});

t.test('templateAttributeHash is sha1(json_encode(column text))', async (t) => {
  const text = '{"tags":[],"quota":0,"active":"1"}';
  const expected = sha1('"{\\"tags\\":[],\\"quota\\":0,\\"active\\":\\"1\\"}"');
  t.equal(templateAttributeHash({ attributes: JSON.parse(text) as Record<string, unknown>, attributesText: text }), expected);
  t.equal(templateAttributeHash({ attributes: JSON.parse(text) as Record<string, unknown> }), expected, 're-encoded like mailcow when no text');
  t.not(templateAttributeHash({ attributes: {}, attributesText: '{"tags": [], "quota": 0, "active": "1"}' }), expected, 'the stored text counts, spaces included');
});

t.test('normalizeAddress and normalizeDomain', async (t) => {
  t.same(normalizeAddress(' Alice.Smith@Example.ORG '), { username: 'alice.smith@example.org', localPart: 'alice.smith', domain: 'example.org' });
  t.same(normalizeAddress('bob@bücher.example'), { username: 'bob@xn--bcher-kva.example', localPart: 'bob', domain: 'xn--bcher-kva.example' });
  for (const bad of ['alice', '@example.org', 'alice@', 'al ice@example.org', '.alice@example.org', 'a..b@example.org', 'alice@localhost', 'alice@-x.org', 'ålice@example.org', 'alice@1.2.3.4', `${'a'.repeat(65)}@example.org`]) {
    t.ok('problem' in (normalizeAddress(bad) as object), `refuses ${bad}`);
  }
  t.equal(normalizeDomain('Example.ORG.'), 'example.org');
  t.match(normalizeDomain('example'), { problem: /not a fully qualified domain name/ });
});

t.test('generateAppPassword: 24 unambiguous characters in groups of four', async (t) => {
  const seen = new Set<string>();
  for (let i = 0; i < 200; i++) {
    const pw = generateAppPassword();
    t.match(pw, /^[^-]{4}(-[^-]{4}){5}$/);
    for (const ch of pw.replaceAll('-', '')) if (!APP_PASSWORD_ALPHABET.includes(ch)) t.fail(`unexpected ${ch}`);
    seen.add(pw);
  }
  t.equal(seen.size, 200, 'no repeats');
  t.notOk(/[0O1lI]/.test(APP_PASSWORD_ALPHABET), 'alphabet has no look-alikes');
  // Bytes at or above the rejection limit are skipped, not folded into the alphabet.
  let calls = 0;
  const fake = (n: number): Buffer => Buffer.alloc(n, calls++ === 0 ? 255 : 0);
  t.equal(generateAppPassword(fake), 'AAAA-AAAA-AAAA-AAAA-AAAA-AAAA');
});

t.test('parseProtocols', async (t) => {
  t.same(parseProtocols(undefined), { imap: 1, pop3: 1, smtp: 1, sieve: 1, eas: 1, dav: 1 });
  t.same(parseProtocols('imap, SMTP'), { imap: 1, pop3: 0, smtp: 1, sieve: 0, eas: 0, dav: 0 });
  t.same(parseProtocols('imap_access'), { imap: 1, pop3: 0, smtp: 0, sieve: 0, eas: 0, dav: 0 });
  t.match(parseProtocols('imap,ftp'), { problem: /unknown protocol ftp; known: imap, pop3, smtp, sieve, eas, dav/ });
  t.match(parseProtocols(''), { problem: /at least one/ });
});

t.test('checkDomainLimits', async (t) => {
  t.same(checkDomainLimits({ mailboxes: 10, defquota: 3072, maxquota: 10240, quota: 10240 }), []);
  t.match(checkDomainLimits({ mailboxes: 10, defquota: 4096, maxquota: 2048, quota: 10240 })[0], /default quota \(4096 MiB\) must not exceed the max quota per mailbox/);
  t.match(checkDomainLimits({ mailboxes: 10, defquota: 1, maxquota: 20480, quota: 10240 })[0], /max quota per mailbox \(20480 MiB\) must not exceed the domain quota/);
  t.match(checkDomainLimits({ mailboxes: -1, defquota: 1, maxquota: 1, quota: 1 })[0], /max mailboxes must be an integer/);
});
