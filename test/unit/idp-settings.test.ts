/** The IdP settings model: parsing mailcow's key/value rows, validation messages, serialization, mapping. */
import t from 'tap';
import {
  MASK,
  maskRaw,
  maskSettings,
  mappingValueProblem,
  parseIdpSettings,
  parseMapping,
  serializeIdpSettings,
  templateFor,
  transportAllowed,
  withMapping,
  withoutMapping,
} from '../../src/idp/index.js';
import type { IdpMapping, IdpSettings } from '../../src/idp/index.js';

const KC = {
  authsource: 'keycloak',
  server_url: 'https://kc.example.org',
  realm: 'mail',
  client_id: 'mailauth',
  client_secret: 's3cret',
};
const OIDC = {
  authsource: 'generic-oidc',
  authorize_url: 'https://id.example.org/auth',
  token_url: 'https://id.example.org/token',
  userinfo_url: 'https://id.example.org/userinfo',
  client_id: 'mail',
  client_secret: 's3cret',
};
const LDAP = { authsource: 'ldap', host: 'ldap1.example.org, ldap2.example.org', basedn: 'dc=example,dc=org', binddn: 'cn=mailauth,dc=example,dc=org', bindpass: 'p' };

t.test('no authsource means no IdP', async (t) => {
  t.same(parseIdpSettings({}), { ok: true, settings: null });
  t.same(parseIdpSettings({ authsource: '', mappers: '["x"]' }), { ok: true, settings: null });
});

t.test('keycloak with defaults (mailcow defaults: login_provisioning 1, sync_interval 15)', async (t) => {
  const r = parseIdpSettings({ ...KC, server_url: 'https://kc.example.org/auth/' });
  if (!r.ok || r.settings?.source !== 'keycloak') throw new Error('expected keycloak settings');
  t.match(r.settings, {
    serverUrl: 'https://kc.example.org/auth',
    realm: 'mail',
    clientId: 'mailauth',
    clientSecret: 's3cret',
    mailpasswordFlow: false,
    periodicSync: false,
    importUsers: false,
    syncIntervalMin: 15,
    loginProvisioning: true,
    ignoreSslError: false,
    version: null,
    mapping: { mappers: [], templates: [], defaultTemplate: null },
  });
});

t.test('generic-oidc and ldap with defaults', async (t) => {
  const o = parseIdpSettings(OIDC);
  if (!o.ok || o.settings?.source !== 'generic-oidc') throw new Error('expected oidc');
  t.same(o.settings.clientScopes, ['openid', 'profile', 'email', 'mailcow_template']);
  t.equal(o.settings.issuer, null);
  const withIssuer = parseIdpSettings({ ...OIDC, authorize_url: '', issuer: 'https://id.example.org' });
  t.ok(withIssuer.ok, 'authorize_url optional with an issuer');
  const l = parseIdpSettings(LDAP);
  if (!l.ok || l.settings?.source !== 'ldap') throw new Error('expected ldap');
  t.match(l.settings, { hosts: ['ldap1.example.org', 'ldap2.example.org'], port: 389, usernameField: 'mail', useSsl: false });
});

// Each row: raw rows → the key and message expected (one problem each).
const INVALID: [string, Record<string, string>, string, RegExp][] = [
  ['unknown source', { authsource: 'saml' }, 'authsource', /must be one of keycloak, generic-oidc, ldap, got "saml"/],
  ['missing server_url', { ...KC, server_url: '' }, 'server_url', /is required/],
  ['not a URL', { ...KC, server_url: 'kc.example.org' }, 'server_url', /must be an absolute http\(s\) URL, got "kc\.example\.org"/],
  ['ftp', { ...KC, server_url: 'ftp://kc.example.org' }, 'server_url', /must use https/],
  ['credentials in URL', { ...KC, server_url: 'https://u:p@kc.example.org' }, 'server_url', /must not contain a user name or password/],
  ['query in URL', { ...KC, server_url: 'https://kc.example.org/?x=1' }, 'server_url', /query string/],
  ['plain http remote', { ...KC, server_url: 'http://kc.example.org' }, 'server_url', /plain http to kc\.example\.org would send the client secret unencrypted/],
  ['realm URL given', { ...KC, server_url: 'https://kc.example.org/realms/mail' }, 'server_url', /without \/realms\/… or \/admin\//],
  ['missing realm', { ...KC, realm: '' }, 'realm', /is required/],
  ['realm with slash', { ...KC, realm: 'a/b' }, 'realm', /a realm name without "\/"/],
  ['missing client id', { ...KC, client_id: ' ' }, 'client_id', /is required/],
  ['missing secret', { ...KC, client_secret: '' }, 'client_secret', /is required/],
  ['secret with newline', { ...KC, client_secret: 'abc\n' }, 'client_secret', /stray newline/],
  ['bad flag', { ...KC, mailpassword_flow: 'yes' }, 'mailpassword_flow', /must be 0 or 1, got "yes"/],
  ['sync interval 0', { ...KC, sync_interval: '0' }, 'sync_interval', /between 1 and 10080 \(minutes\), got "0"/],
  ['sync interval text', { ...KC, sync_interval: 'ten' }, 'sync_interval', /got "ten"/],
  ['bad version', { ...KC, version: 'latest' }, 'version', /a Keycloak version/],
  ['mappers not JSON', { ...KC, mappers: '[staff', templates: '[]' }, 'mappers', /invalid JSON/],
  ['mappers not strings', { ...KC, mappers: '[1]', templates: '["a"]' }, 'mappers', /JSON array of strings/],
  ['unequal lengths', { ...KC, mappers: '["a","b"]', templates: '["A"]' }, 'templates', /as many entries as mappers \(2\), got 1/],
  ['duplicate mapper', { ...KC, mappers: '["a","a"]', templates: '["A","B"]' }, 'mappers', /"a" is listed twice/],
  ['empty template', { ...KC, mappers: '["a"]', templates: '[""]' }, 'templates', /entry 1 \(for "a"\) is empty/],
  ['oidc without token_url', { ...OIDC, token_url: '' }, 'token_url', /is required/],
  ['oidc without authorize_url nor issuer', { ...OIDC, authorize_url: '' }, 'authorize_url', /is required/],
  ['oidc scopes without openid', { ...OIDC, client_scopes: 'profile email' }, 'client_scopes', /must include "openid"/],
  ['oidc bad scopes', { ...OIDC, client_scopes: 'openid  "x"' }, 'client_scopes', /space-separated scope names/],
  ['ldap port', { ...LDAP, port: '70000' }, 'port', /between 1 and 65535/],
  ['ldap ssl and tls', { ...LDAP, use_ssl: '1', use_tls: '1' }, 'use_tls', /cannot be combined with use_ssl/],
  ['ldap attribute name', { ...LDAP, username_field: 'mail;x' }, 'username_field', /an LDAP attribute name/],
  ['ldap missing bindpass', { ...LDAP, bindpass: '' }, 'bindpass', /is required/],
];

t.test('every invalid value gets its specific message', async (t) => {
  for (const [name, raw, key, message] of INVALID) {
    const r = parseIdpSettings(raw);
    if (r.ok) {
      t.fail(`${name}: accepted`);
      continue;
    }
    t.equal(r.problems.length, 1, `${name}: one problem (${JSON.stringify(r.problems)})`);
    t.equal(r.problems[0]?.key, key, name);
    t.match(r.problems[0]?.message, message, name);
  }
});

t.test('messages never echo a secret', async (t) => {
  const r = parseIdpSettings({ ...KC, client_secret: 'topsecret\u0001' });
  t.notOk(r.ok);
  t.notMatch(JSON.stringify(r), 'topsecret');
});

t.test('all problems are reported at once', async (t) => {
  const r = parseIdpSettings({ authsource: 'keycloak', sync_interval: '-1' });
  if (r.ok) throw new Error('expected problems');
  t.same(r.problems.map((p) => p.key).sort(), ['client_id', 'client_secret', 'realm', 'server_url', 'sync_interval']);
});

t.test('plain http: loopback always, elsewhere only with ignore_ssl_error', async (t) => {
  t.ok(parseIdpSettings({ ...KC, server_url: 'http://127.0.0.1:8080' }).ok);
  t.ok(parseIdpSettings({ ...KC, server_url: 'http://localhost:8080' }).ok);
  t.ok(parseIdpSettings({ ...KC, server_url: 'http://[::1]:8080' }).ok);
  t.ok(parseIdpSettings({ ...KC, server_url: 'http://keycloak:8080', ignore_ssl_error: '1' }).ok);
  t.notOk(parseIdpSettings({ ...KC, server_url: 'http://keycloak:8080' }).ok);
  const cases: [string, boolean, boolean][] = [
    ['https://x.example', false, true],
    ['http://127.1.2.3', false, true],
    ['http://x.example', false, false],
    ['http://x.example', true, true],
    ['ftp://127.0.0.1', true, false],
  ];
  for (const [url, ignore, want] of cases) t.equal(transportAllowed(new URL(url), ignore), want, `${url} ignore=${ignore}`);
});

t.test('serialize → parse round trip, in mailcow value formats', async (t) => {
  const raws = [
    { ...KC, mailpassword_flow: '1', periodic_sync: '1', import_users: '0', sync_interval: '30', ignore_ssl_error: '0', login_provisioning: '0', version: '26.0.5', redirect_url: 'https://mail.example.org', mappers: '["staff","x y"]', templates: '["Staff","Default"]', default_template: 'Default' },
    { ...OIDC, issuer: 'https://id.example.org', client_scopes: 'openid email' },
    { ...LDAP, port: '636', use_ssl: '1', attribute_field: 'department', filter: '(objectClass=person)' },
  ];
  for (const raw of raws) {
    const a = parseIdpSettings(raw);
    if (!a.ok || !a.settings) throw new Error(`did not parse: ${JSON.stringify(a)}`);
    const out = serializeIdpSettings(a.settings);
    const b = parseIdpSettings(out);
    t.same(b, a, `${raw.authsource} round trip`);
    for (const v of Object.values(out)) t.type(v, 'string');
  }
  const kc = parseIdpSettings({ ...KC, mailpassword_flow: 'true' });
  if (!kc.ok || !kc.settings) throw new Error('parse');
  t.match(serializeIdpSettings(kc.settings), { mailpassword_flow: '1', mappers: '[]', templates: '[]', default_template: '', sync_interval: '15' });
});

t.test('masking', async (t) => {
  t.same(maskRaw({ client_secret: 'a', bindpass: 'b', access_token: 'c', realm: 'mail', mappers: '[]', empty: '' }), {
    client_secret: MASK,
    bindpass: MASK,
    access_token: MASK,
    realm: 'mail',
    mappers: '[]',
    empty: '',
  });
  const s = parseIdpSettings(KC);
  if (!s.ok || !s.settings) throw new Error('parse');
  t.notMatch(JSON.stringify(maskSettings(s.settings)), 's3cret');
  const l = parseIdpSettings(LDAP);
  if (!l.ok || !l.settings) throw new Error('parse');
  t.match(maskSettings(l.settings), { bindpass: MASK });
});

t.test('templateFor: mapping, default, skip', async (t) => {
  const mapping: IdpMapping = { mappers: ['staff', 'Student', ''], templates: ['Staff', 'Students', 'Empty'], defaultTemplate: 'Default' };
  const settings = { mapping };
  const cases: [string | null | undefined, ReturnType<typeof templateFor>][] = [
    ['staff', { template: 'Staff', via: 'mapping' }],
    ['Student', { template: 'Students', via: 'mapping' }],
    ['student', { template: 'Default', via: 'default' }], // exact, case-sensitive as mailcow
    ['unknown', { template: 'Default', via: 'default' }],
    ['', { template: 'Default', via: 'default' }], // an empty value never matches a mapping
    [null, { template: 'Default', via: 'default' }],
    [undefined, { template: 'Default', via: 'default' }],
  ];
  for (const [value, want] of cases) t.same(templateFor(value, settings), want, String(value));
  const noDefault = { mapping: { ...mapping, defaultTemplate: null } };
  t.equal(templateFor('unknown', noDefault), null);
  t.equal(templateFor(null, noDefault), null);
  t.same(templateFor('staff', noDefault), { template: 'Staff', via: 'mapping' });
});

t.test('mapping edits are pure', async (t) => {
  const m: IdpMapping = { mappers: ['a'], templates: ['A'], defaultTemplate: null };
  const added = withMapping(m, 'b', 'B');
  t.same(added, { mapping: { mappers: ['a', 'b'], templates: ['A', 'B'], defaultTemplate: null }, replaced: null });
  t.same(m, { mappers: ['a'], templates: ['A'], defaultTemplate: null }, 'input unchanged');
  t.same(withMapping(m, 'a', 'Z'), { mapping: { mappers: ['a'], templates: ['Z'], defaultTemplate: null }, replaced: 'A' });
  t.same(withoutMapping(added.mapping, 'a'), { mappers: ['b'], templates: ['B'], defaultTemplate: null });
  t.equal(withoutMapping(m, 'zz'), null);
  t.equal(mappingValueProblem('staff'), null);
  t.match(mappingValueProblem(''), /non-empty/);
  t.match(mappingValueProblem(' x'), /leading or trailing/);
  t.match(mappingValueProblem('a\tb'), /control/);
  t.match(mappingValueProblem('x'.repeat(256)), /255/);
});

t.test('parseMapping reads only the mapping keys', async (t) => {
  t.same(parseMapping({ mappers: '["a"]', templates: '["A"]', default_template: 'D', server_url: 'garbage' }), {
    mapping: { mappers: ['a'], templates: ['A'], defaultTemplate: 'D' },
    problems: [],
  });
  t.equal(parseMapping({ mappers: '["a"]' }).problems.length, 1);
});

t.test('settings type covers each source', async (t) => {
  const all: IdpSettings[] = [KC, OIDC, LDAP].map((raw) => {
    const r = parseIdpSettings(raw);
    if (!r.ok || !r.settings) throw new Error('parse');
    return r.settings;
  });
  t.same(all.map((s) => s.source), ['keycloak', 'generic-oidc', 'ldap']);
});
