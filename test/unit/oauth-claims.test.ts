/** Issue 20: the pure parts of token checks (claim rules) and the oauth config section. */
import t from 'tap';
import { buildConfig, describeConfig } from '../../src/config/index.js';
import { isMailauthError } from '../../src/errors.js';
import { checkClaims } from '../../src/idp/index.js';
import type { TokenValidatorConfig } from '../../src/idp/index.js';
import { isTokenMechanism } from '../../src/auth/index.js';

const cfg: TokenValidatorConfig = {
  issuer: null,
  jwksUrl: null,
  introspectionUrl: null,
  introspection: 'opaque',
  audiences: ['mail-server'],
  clients: ['thunderbird'],
  requiredScopes: ['mail'],
  algorithms: ['RS256'],
  clockToleranceMs: 30_000,
  emailClaim: 'email',
  requireEmailVerified: true,
  jwksCooldownMs: 30_000,
  jwksMaxAgeMs: 600_000,
  maxTokenBytes: 8192,
};

const good = { aud: ['mail-server', 'account'], azp: 'thunderbird', scope: 'openid mail email', email: 'a@example.org', email_verified: true, sub: 's1', typ: 'Bearer' };

t.test('checkClaims: one rule per row', async (t) => {
  const rows: [string, Record<string, unknown>, RegExp | null, Partial<TokenValidatorConfig>?][] = [
    ['valid', good, null],
    ['aud as a string', { ...good, aud: 'mail-server' }, null],
    ['aud missing', { ...good, aud: undefined }, /audience/],
    ['aud of another API', { ...good, aud: 'account' }, /audience/],
    ['client_id instead of azp (RFC 9068)', { ...good, azp: undefined, client_id: 'thunderbird' }, null],
    ['no client at all', { ...good, azp: undefined }, /client \(none\)/],
    ['another client', { ...good, azp: 'webshop' }, /client "webshop"/],
    ['scope missing', { ...good, scope: 'openid email' }, /lacks scope mail/],
    ['scp array', { ...good, scope: undefined, scp: ['mail'] }, null],
    ['no email', { ...good, email: undefined }, /no email claim/],
    ['email not verified', { ...good, email_verified: false }, /not verified/],
    ['email not verified, check off', { ...good, email_verified: false }, null, { requireEmailVerified: false }],
    ['ID token', { ...good, typ: 'ID' }, /not an access token/],
    ['refresh token', { ...good, typ: 'Refresh' }, /not an access token/],
    ['at+jwt typ claim', { ...good, typ: 'at+jwt' }, null],
    ['other email claim', { ...good, email: undefined, upn: 'a@example.org' }, null, { emailClaim: 'upn' }],
    ['no audience rule, client rule only', { ...good, aud: 'account' }, null, { audiences: [] }],
  ];
  for (const [name, claims, want, over] of rows) {
    const r = checkClaims(claims, { ...cfg, ...over }, 'jwt');
    if (want === null) t.match(r, { ok: true, email: String }, name);
    else t.match(r, { ok: false, reason: want }, name);
  }
});

t.test('isTokenMechanism', async (t) => {
  t.ok(isTokenMechanism('XOAUTH2'));
  t.ok(isTokenMechanism('oauthbearer'));
  t.notOk(isTokenMechanism('PLAIN'));
  t.notOk(isTokenMechanism(undefined));
});

t.test('oauth config section', async (t) => {
  const ok = buildConfig({ oauth: { enabled: true, clients: ['thunderbird'] } }, { env: {} });
  t.match(ok.oauth, { enabled: true, clients: ['thunderbird'], introspection: 'opaque', algorithms: ['RS256'], clockToleranceMs: 30_000, emailClaim: 'email' });
  t.equal(buildConfig({}, { env: {} }).oauth.enabled, false, 'off by default');
  const problems = (raw: unknown): string[] => {
    try {
      buildConfig(raw, { env: {} });
      return [];
    } catch (err) {
      if (!isMailauthError(err, 'ERR_CONFIG_INVALID')) throw err;
      return (err.details?.problems as string[]) ?? [];
    }
  };
  t.match(problems({ oauth: { enabled: true } }), [/at least one accepted audience or client/], 'enabled without audiences or clients');
  t.match(problems({ oauth: { enabled: true, clients: ['x'], introspection_client_id: 'mailauth' } }), [/introspection_secret_file: required/], 'a client id without a secret');
  t.match(problems({ oauth: { algorithms: ['none'] } }), [/oauth.algorithms\[0\]: must be one of/], 'alg none is not an algorithm');
  t.match(problems({ oauth: { introspection: 'sometimes' } }), [/oauth.introspection: must be one of off, opaque, always/]);
  t.match(problems({ oauth: { issuer: 'not a url' } }), [/oauth.issuer: must be an http\(s\) URL/]);
  const env = buildConfig({ oauth: { enabled: true, clients: ['x'], introspection_client_id: 'mailauth' } }, { env: { MAILAUTH_OAUTH_INTROSPECTION_SECRET: 's3cret' } });
  t.equal(env.oauth.introspectionSecret, 's3cret', 'the secret from the environment');
  t.notMatch(JSON.stringify(describeConfig(env)), /s3cret/, 'config check masks it');
  t.same(env.secretSources['oauth.introspection_secret_file'], { kind: 'env', name: 'MAILAUTH_OAUTH_INTROSPECTION_SECRET' }, 'doctor sees where it came from');
  const file = buildConfig({ oauth: { enabled: true, clients: ['x'], introspection_client_id: 'm', introspection_secret_file: '/etc/mailauth/introspect' } }, { env: {}, readFile: () => 'file-secret\n' });
  t.equal(file.oauth.introspectionSecret, 'file-secret', 'the secret from its file');
  t.same(file.secretSources['oauth.introspection_secret_file'], { kind: 'file', path: '/etc/mailauth/introspect' });
  t.notOk('oauth.introspection_secret_file' in buildConfig({}, { env: {} }).secretSources, 'absent when not configured');
});
