/**
 * Server-rendered pages: plain HTML, every value escaped, no inline script or
 * style (the CSP forbids both), labels on every field, forms that work
 * without JavaScript. `u(path)` prefixes the portal's base path.
 */
import type { AccessFlag } from '../config/index.js';
import type { AppPasswordView, LoginView, MailboxView } from './actions.js';

export function esc(v: unknown): string {
  return String(v).replace(/[&<>"']/g, (c) => ({ '&': '&amp;', '<': '&lt;', '>': '&gt;', '"': '&quot;', "'": '&#39;' })[c] as string);
}

/** Tagged template: interpolations are escaped unless wrapped in raw(). */
class Raw {
  constructor(readonly html: string) {}
}
export const raw = (html: string): Raw => new Raw(html);
export function html(strings: TemplateStringsArray, ...values: unknown[]): Raw {
  let out = strings[0] as string;
  values.forEach((v, i) => {
    const part = Array.isArray(v) ? v.map((x) => (x instanceof Raw ? x.html : esc(x))).join('') : v instanceof Raw ? v.html : v === null || v === undefined || v === false ? '' : esc(v);
    out += part + (strings[i + 1] as string);
  });
  return new Raw(out);
}

export const PROTOCOL_NAMES: Record<AccessFlag, string> = {
  imap: 'IMAP (read mail)',
  pop3: 'POP3 (download mail)',
  smtp: 'SMTP (send mail)',
  sieve: 'ManageSieve (filters)',
  eas: 'Exchange ActiveSync',
  dav: 'CalDAV/CardDAV',
};

export interface PageContext {
  base: string;
  /** Signed in: who, and the session's CSRF token for the sign-out form. */
  user: { username: string; csrf: string } | null;
}

export function page(ctx: PageContext, title: string, body: Raw): string {
  const u = (p: string): string => `${ctx.base}${p}`;
  const signOut = ctx.user
    ? html`<span class="who">Signed in as ${ctx.user.username}</span>
      <form method="post" action="${u('/signout')}"><input type="hidden" name="csrf" value="${ctx.user.csrf}"><button type="submit" class="secondary">Sign out</button></form>`
    : html``;
  return `<!DOCTYPE html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>${esc(title)} · Mail account</title>
<link rel="stylesheet" href="${esc(u('/static/portal.css'))}">
</head>
<body>
<a class="skip" href="#main">Skip to content</a>
<header><a class="brand" href="${esc(u('/'))}">Mail account</a>${signOut.html}</header>
<main id="main">
<h1>${esc(title)}</h1>
${body.html}
</main>
<script src="${esc(u('/static/portal.js'))}" defer></script>
</body>
</html>
`;
}

function notices(flash: string | null, error: string | null): Raw {
  return html`${flash ? html`<p class="notice" role="status">${flash}</p>` : ''}${error ? html`<p class="error" role="alert">${error}</p>` : ''}`;
}

export function signInView(o: { base: string; csrf: string; idp: string | null; password: boolean; error: string | null; username?: string }): Raw {
  const u = (p: string): string => `${o.base}${p}`;
  const idpName = o.idp === 'keycloak' ? 'Keycloak' : 'your identity provider';
  return html`${notices(null, o.error)}
${o.idp ? html`<p>Use the account you sign in to ${idpName} with.</p>
<div class="actions"><a class="button" href="${u('/signin/idp')}">Sign in with ${idpName}</a></div>` : ''}
${o.password ? html`${o.idp ? html`<h2>Or with your mailbox password</h2>` : ''}
<form method="post" action="${u('/signin/password')}">
<input type="hidden" name="csrf" value="${o.csrf}">
<label for="username">Email address</label>
<input type="email" id="username" name="username" autocomplete="username" required value="${o.username ?? ''}">
<label for="password">Password</label>
<input type="password" id="password" name="password" autocomplete="current-password" required>
<div class="actions"><button type="submit">Sign in</button></div>
</form>` : ''}
${!o.idp && !o.password ? html`<p>Sign-in is not available: no identity provider is configured and password sign-in is off.</p>` : ''}`;
}

function appPasswordRows(base: string, apps: AppPasswordView[]): Raw {
  if (apps.length === 0) return html`<p>You have no app passwords yet.</p>`;
  return html`<div class="table-wrap"><table class="stack">
<caption>Your app passwords</caption>
<thead><tr><th scope="col">Name</th><th scope="col">Protocols</th><th scope="col">Created</th><th scope="col">Last used</th><th scope="col"><span class="vh">Action</span></th></tr></thead>
<tbody>${apps.map(
    (a) => html`<tr><td data-label="Name">${a.name}</td><td data-label="Protocols">${a.protocols.join(', ') || 'none'}</td><td data-label="Created">${a.created}</td><td data-label="Last used">${a.lastUsed ?? 'never'}</td>
<td><a class="button secondary" href="${`${base}/app-passwords/${a.id}/revoke`}" aria-label="${`Revoke ${a.name}`}">Revoke</a></td></tr>`,
  )}</tbody></table></div>`;
}

function loginRows(logins: LoginView[]): Raw {
  if (logins.length === 0) return html`<p>No successful logins recorded yet.</p>`;
  return html`<div class="table-wrap"><table class="stack">
<caption>Latest successful login per service and address</caption>
<thead><tr><th scope="col">Time</th><th scope="col">Service</th><th scope="col">Client address</th><th scope="col">With</th></tr></thead>
<tbody>${logins.map(
    (l) => html`<tr><td data-label="Time">${l.time}</td><td data-label="Service">${l.service}</td><td data-label="Client address">${l.ip || 'unknown'}</td><td data-label="With">${l.appPassword ? `app password ${l.appPassword}` : 'mailbox password'}</td></tr>`,
  )}</tbody></table></div>`;
}

export function homeView(o: { base: string; view: MailboxView; flash: string | null }): Raw {
  const u = (p: string): string => `${o.base}${p}`;
  const v = o.view;
  return html`${notices(o.flash, null)}
<p>Mailbox <strong>${v.username}</strong>${v.name ? html` (${v.name})` : ''}.</p>
<h2 id="apps">App passwords</h2>
<p class="hint">Mail programs use an app password instead of your main password: one per device, limited to the protocols you choose, revocable at any time.</p>
${appPasswordRows(o.base, v.appPasswords)}
<div class="actions"><a class="button" href="${u('/app-passwords/new')}">Create an app password</a>
${v.authsource === 'mailcow' ? html`<a class="button secondary" href="${u('/password')}">Change mailbox password</a>` : ''}</div>
<h2 id="logins">Recent logins</h2>
${loginRows(v.logins)}`;
}

export function newAppPasswordView(o: { base: string; csrf: string; allowed: AccessFlag[]; chosen: readonly string[] | null; name: string; error: string | null }): Raw {
  const chosen = o.chosen ?? o.allowed;
  return html`${notices(null, o.error)}
<form method="post" action="${`${o.base}/app-passwords`}">
<input type="hidden" name="csrf" value="${o.csrf}">
<label for="name">Name</label>
<p class="hint" id="name-hint">What it is for, e.g. “Thunderbird on laptop”.</p>
<input type="text" id="name" name="name" maxlength="255" required aria-describedby="name-hint" value="${o.name}">
<fieldset><legend>Protocols it may use</legend>
${o.allowed.map((f) => html`<label><input type="checkbox" name="protocols" value="${f}"${chosen.includes(f) ? raw(' checked') : ''}> ${PROTOCOL_NAMES[f]}</label>`)}
</fieldset>
<div class="actions"><button type="submit">Create</button><a class="button secondary" href="${`${o.base}/`}">Cancel</a></div>
</form>`;
}

export function createdView(o: { base: string; name: string; password: string; protocols: AccessFlag[]; username: string; mailHost: string }): Raw {
  const has = (f: AccessFlag): boolean => o.protocols.includes(f);
  return html`<p class="notice" role="status">App password “${o.name}” created. It is shown only this once: copy it into your mail program now.</p>
<p><code class="secret" id="app-password">${o.password}</code></p>
<div class="actions"><button type="button" data-copy="app-password" aria-describedby="copy-status" hidden>Copy password</button><span id="copy-status" role="status"></span></div>
<h2>Settings for your mail program</h2>
<dl>
<dt>User name</dt><dd>${o.username}</dd>
<dt>Password</dt><dd>the app password above (with its dashes)</dd>
${has('imap') ? html`<dt>IMAP</dt><dd>${o.mailHost}, port 993, SSL/TLS</dd>` : ''}
${has('pop3') ? html`<dt>POP3</dt><dd>${o.mailHost}, port 995, SSL/TLS</dd>` : ''}
${has('smtp') ? html`<dt>SMTP</dt><dd>${o.mailHost}, port 465 (SSL/TLS) or 587 (STARTTLS), normal password authentication</dd>` : ''}
${has('sieve') ? html`<dt>ManageSieve</dt><dd>${o.mailHost}, port 4190, STARTTLS</dd>` : ''}
</dl>
<div class="actions"><a class="button" href="${`${o.base}/`}">Done</a></div>`;
}

export function revokeView(o: { base: string; csrf: string; app: AppPasswordView }): Raw {
  return html`<p>Revoke the app password <strong>${o.app.name}</strong> (${o.app.protocols.join(', ') || 'no protocols'}, created ${o.app.created})?
Mail programs using it stop working at once.</p>
<form method="post" action="${`${o.base}/app-passwords/${o.app.id}/revoke`}">
<input type="hidden" name="csrf" value="${o.csrf}">
<div class="actions"><button type="submit" class="danger">Revoke</button><a class="button secondary" href="${`${o.base}/`}">Cancel</a></div>
</form>`;
}

export function passwordView(o: { base: string; csrf: string; error: string | null; policy: string }): Raw {
  return html`${notices(null, o.error)}
<form method="post" action="${`${o.base}/password`}">
<input type="hidden" name="csrf" value="${o.csrf}">
<label for="current">Current password</label>
<input type="password" id="current" name="current" autocomplete="current-password" required>
<label for="new">New password</label>
<p class="hint" id="policy">${o.policy}</p>
<input type="password" id="new" name="new" autocomplete="new-password" required aria-describedby="policy">
<label for="confirm">New password again</label>
<input type="password" id="confirm" name="confirm" autocomplete="new-password" required>
<div class="actions"><button type="submit">Change password</button><a class="button secondary" href="${`${o.base}/`}">Cancel</a></div>
</form>`;
}

export function reauthView(o: { base: string; csrf: string; method: 'idp' | 'password'; error: string | null }): Raw {
  const intro = html`${notices(null, o.error)}
<p>Creating an app password needs a recent sign-in. Please confirm it is you.</p>`;
  if (o.method === 'idp') {
    return html`${intro}
<div class="actions"><a class="button" href="${`${o.base}/reauth/idp`}">Sign in again</a><a class="button secondary" href="${`${o.base}/`}">Cancel</a></div>`;
  }
  return html`${intro}
<form method="post" action="${`${o.base}/reauth`}">
<input type="hidden" name="csrf" value="${o.csrf}">
<label for="password">Mailbox password</label>
<input type="password" id="password" name="password" autocomplete="current-password" required>
<div class="actions"><button type="submit">Confirm</button><a class="button secondary" href="${`${o.base}/`}">Cancel</a></div>
</form>`;
}

export function messageView(o: { base: string; text: string; kind: 'error' | 'notice'; back?: string }): Raw {
  return html`<p class="${o.kind}" role="${o.kind === 'error' ? 'alert' : 'status'}">${o.text}</p>
<div class="actions"><a class="button" href="${`${o.base}/`}">${o.back ?? 'Back'}</a></div>`;
}
