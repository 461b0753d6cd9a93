/**
 * What the `idp test` checklists share: the Check type, the line collector,
 * the reachability/TLS lines and the template-mapping line.
 */
import type { Dispatcher } from 'undici';
import type { OAuthConfig } from '../config/index.js';
import { isMailauthError } from '../errors.js';
import { isLoopbackHost, mappingTemplates, templateFor } from './settings.js';
import type { IdpMapping } from './settings.js';

export type CheckStatus = 'pass' | 'fail' | 'warn' | 'skip';

export interface Check {
  id: string;
  status: CheckStatus;
  title: string;
  detail?: string;
  fix?: string;
  /** A failed required check makes `idp test` exit 1 (and `idp set --test` refuse to save). */
  required: boolean;
}

export interface IdpTestDeps {
  /** Names of the mailbox templates in the database. */
  templateNames(): Promise<readonly string[]>;
  /** config.idp */
  idp: { timeoutMs: number; retries: number; retryBackoffMs: number };
  /** config.auth.idpHashSchemes */
  idpHashSchemes: readonly string[];
  /** config.auth.oidcPasswordGrant */
  passwordGrant: boolean;
  /** config.oauth: with enabled, the checklist adds the JWKS and introspection lines (issue 20). */
  oauth?: OAuthConfig;
  dispatcher?: Dispatcher;
  now?: () => number;
  sleep?: (ms: number) => Promise<void>;
}

export interface IdpTestOptions {
  /** Look this user up (by email) and report their template and hash scheme. */
  user?: string;
  /** Generic OIDC only: the user's password, for a password-grant + userinfo check. */
  password?: string;
  /** Users read for the attribute and mapping checks (default 1000). */
  scanLimit?: number;
}

export const TEMPLATE_ATTRIBUTE = 'mailcow_template';
export const PASSWORD_ATTRIBUTE = 'mailcow_password';

export function checklistPassed(checks: readonly Check[]): boolean {
  return checks.every((c) => !c.required || c.status !== 'fail');
}

// ── shared pieces ───────────────────────────────────────────────────────────

export class Checklist {
  readonly checks: Check[] = [];
  add(c: Check): Check {
    this.checks.push(c);
    return c;
  }
  skip(id: string, title: string, required: boolean, why: string): void {
    this.add({ id, status: 'skip', title, detail: why, required });
  }
}

export function detailOf(err: unknown): string {
  return err instanceof Error ? err.message : String(err);
}

export function reason(err: unknown): string | null {
  const r = isMailauthError(err) ? err.details?.reason : undefined;
  return typeof r === 'string' ? r : null;
}

export function plural(n: number, one: string, many = `${one}s`): string {
  return `${n} ${n === 1 ? one : many}`;
}

/** Reachability and TLS from the outcome of the first request to the server. */
export function transportChecks(list: Checklist, url: URL, ignoreSsl: boolean, firstError: unknown, strictTls: unknown): boolean {
  const host = url.host;
  const title = `Server reachable (${host})`;
  const netError = firstError !== null && (isMailauthError(firstError, 'ERR_IDP_TIMEOUT') || (isMailauthError(firstError, 'ERR_IDP_UNAVAILABLE') && reason(firstError) === 'network'));
  if (netError) {
    const code = isMailauthError(firstError) ? firstError.details?.networkCode : null;
    list.add({
      id: 'reachable',
      status: 'fail',
      required: true,
      title,
      detail: detailOf(firstError),
      fix:
        code === 'ENOTFOUND' || code === 'EAI_AGAIN'
          ? `the name ${url.hostname} does not resolve from this host; check the URL and DNS`
          : `check the URL, that the server runs and listens on ${host}, and that no firewall blocks this host`,
    });
    list.skip('tls', 'TLS certificate valid', true, 'skipped: server not reachable');
    return false;
  }
  list.add({ id: 'reachable', status: 'pass', required: true, title });
  const tlsTitle = 'TLS certificate valid';
  if (url.protocol === 'http:') {
    if (isLoopbackHost(url.hostname)) list.add({ id: 'tls', status: 'skip', required: true, title: tlsTitle, detail: 'plain http to a loopback address: no TLS needed' });
    else {
      list.add({
        id: 'tls',
        status: 'warn',
        required: true,
        title: tlsTitle,
        detail: `plain http to ${url.hostname}: the client secret, tokens and password hashes travel unencrypted (allowed because ignore_ssl_error is on)`,
        fix: 'use an https:// URL',
      });
    }
    return true;
  }
  const tlsFailure = isMailauthError(firstError, 'ERR_IDP_UNAVAILABLE') && reason(firstError) === 'tls' ? firstError : null;
  if (tlsFailure) {
    list.add({
      id: 'tls',
      status: 'fail',
      required: true,
      title: tlsTitle,
      detail: detailOf(tlsFailure),
      fix: `give ${url.hostname} a certificate this host trusts (or install the CA, e.g. NODE_EXTRA_CA_CERTS for mailauth); --ignore-ssl-error turns checks off but is not recommended`,
    });
    return false;
  }
  if (ignoreSsl) {
    const strictProblem = isMailauthError(strictTls, 'ERR_IDP_UNAVAILABLE') && reason(strictTls) === 'tls' ? detailOf(strictTls) : null;
    list.add({
      id: 'tls',
      status: 'warn',
      required: true,
      title: tlsTitle,
      detail: strictProblem
        ? `certificate checks are off (ignore_ssl_error); with checks on: ${strictProblem}`
        : 'certificate checks are off (ignore_ssl_error), although the certificate verifies',
      fix: strictProblem ? 'install a trusted certificate, then turn ignore_ssl_error off (--no-ignore-ssl-error)' : 'turn ignore_ssl_error off: mailauth idp set … --no-ignore-ssl-error',
    });
    return true;
  }
  list.add({ id: 'tls', status: 'pass', required: true, title: tlsTitle });
  return true;
}

export async function mappingCheck(
  list: Checklist,
  mapping: IdpMapping,
  deps: IdpTestDeps,
  coverage: Map<string | null, number> | null,
  provisioning: boolean,
): Promise<void> {
  const title = 'Template mapping';
  let names: readonly string[];
  try {
    names = await deps.templateNames();
  } catch (err) {
    list.add({ id: 'mapping', status: 'fail', required: true, title, detail: `cannot read the mailbox templates: ${detailOf(err)}`, fix: 'check the database with `mailauth db status`' });
    return;
  }
  const missing = mappingTemplates(mapping).filter((t) => !names.includes(t));
  if (missing.length > 0) {
    const users = missing.map((t) => {
      const values = mapping.mappers.filter((_, i) => mapping.templates[i] === t).map((v) => JSON.stringify(v));
      return `${JSON.stringify(t)} (${[...values, ...(mapping.defaultTemplate === t ? ['the default'] : [])].join(', ')})`;
    });
    list.add({
      id: 'mapping',
      status: 'fail',
      required: true,
      title,
      detail: `the mapping names mailbox templates that do not exist: ${users.join('; ')}`,
      fix: `create them with \`mailauth template add NAME\`, or map to an existing template (${names.join(', ') || 'none yet'}) with \`mailauth idp map add VALUE TEMPLATE\` / \`mailauth idp map default TEMPLATE\``,
    });
    return;
  }
  const lines: string[] = mapping.mappers.map((v, i) => `${JSON.stringify(v)} → ${mapping.templates[i] ?? '?'}${coverage ? ` (${plural(coverage.get(v) ?? 0, 'user')} scanned)` : ''}`);
  lines.push(`default → ${mapping.defaultTemplate ?? 'none (unmapped users are skipped)'}`);
  let skipped = 0;
  if (coverage) {
    for (const [value, n] of [...coverage.entries()].sort((a, b) => b[1] - a[1])) {
      if (value !== null && mapping.mappers.includes(value)) continue;
      const choice = templateFor(value, { mapping });
      const label = value === null ? '(no mailcow_template)' : `${JSON.stringify(value)} (not mapped)`;
      lines.push(`${label}: ${plural(n, 'user')} → ${choice ? `default template ${choice.template}` : 'skipped'}`);
      if (!choice) skipped += n;
    }
  }
  if (mapping.mappers.length === 0 && mapping.defaultTemplate === null) {
    list.add({
      id: 'mapping',
      status: provisioning ? 'warn' : 'pass',
      required: true,
      title,
      detail: `no mapping and no default template: login provisioning and import skip every user${provisioning ? '' : ' (both are off)'}`,
      fix: 'map values with `mailauth idp map add VALUE TEMPLATE` or set a fallback with `mailauth idp map default Default`',
    });
    return;
  }
  if (skipped > 0) {
    list.add({
      id: 'mapping',
      status: 'warn',
      required: true,
      title,
      detail: `${plural(skipped, 'scanned user')} would be skipped (no mapping for their value and no default). ${lines.join('; ')}`,
      fix: 'map the values with `mailauth idp map add VALUE TEMPLATE`, or set `mailauth idp map default TEMPLATE`',
    });
    return;
  }
  list.add({ id: 'mapping', status: 'pass', required: true, title, detail: lines.join('; ') });
}
