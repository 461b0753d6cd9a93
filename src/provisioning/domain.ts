/**
 * Domains and their limits (all in MiB, as mailcow stores them): the checks
 * mailcow makes when a domain is added or edited, plus "never below what is
 * already used", and deletion that refuses while mailboxes exist unless forced.
 */
import {
  countAliasesOfDomain,
  deleteAliasesOfDomain,
  deleteDomain,
  deleteMailbox,
  domainUsage,
  getDomain,
  getDomainForUpdate,
  insertDomain,
  listMailboxes,
  updateDomain,
} from '../db/index.js';
import type { DomainRow, Queryable } from '../db/index.js';
import { normalizeDomain } from './address.js';
import { MIB, refuse } from './refusal.js';
import type { Refusal } from './refusal.js';

export interface DomainLimits {
  /** Maximum number of mailboxes. */
  mailboxes: number;
  /** Default quota of a new mailbox, MiB. */
  defquota: number;
  /** Maximum quota of one mailbox, MiB. */
  maxquota: number;
  /** Total quota of all mailboxes, MiB. */
  quota: number;
}

/** mailcow's Default domain template. */
export const DEFAULT_DOMAIN_LIMITS: Readonly<DomainLimits> = Object.freeze({ mailboxes: 10, defquota: 3072, maxquota: 10240, quota: 10240 });

const MAX_MIB = 2 ** 43; // BIGINT column, bytes must stay a safe integer

export function checkDomainLimits(l: DomainLimits): string[] {
  const problems: string[] = [];
  const int = (name: string, v: number, min: number, max: number): void => {
    if (!Number.isSafeInteger(v) || v < min || v > max) problems.push(`${name} must be an integer between ${min} and ${max}, got ${v}`);
  };
  int('max mailboxes', l.mailboxes, 0, 2_147_483_647);
  int('default quota', l.defquota, 1, MAX_MIB);
  int('max quota', l.maxquota, 1, MAX_MIB);
  int('domain quota', l.quota, 1, MAX_MIB);
  if (problems.length > 0) return problems;
  if (l.defquota > l.maxquota) problems.push(`default quota (${l.defquota} MiB) must not exceed the max quota per mailbox (${l.maxquota} MiB)`);
  if (l.maxquota > l.quota) problems.push(`max quota per mailbox (${l.maxquota} MiB) must not exceed the domain quota (${l.quota} MiB)`);
  return problems;
}

export type DomainRefusal = Refusal<'invalid_domain' | 'invalid_limits' | 'domain_exists' | 'domain_missing' | 'limits_below_usage' | 'domain_not_empty'>;

export interface NewDomainInput extends Partial<DomainLimits> {
  domain: string;
  description?: string;
  active?: 0 | 1;
}

export async function createDomain(tx: Queryable, input: NewDomainInput): Promise<{ domain: DomainRow } | DomainRefusal> {
  const name = normalizeDomain(input.domain);
  if (typeof name !== 'string') return refuse('invalid_domain', name.problem);
  const limits: DomainLimits = {
    mailboxes: input.mailboxes ?? DEFAULT_DOMAIN_LIMITS.mailboxes,
    defquota: input.defquota ?? DEFAULT_DOMAIN_LIMITS.defquota,
    maxquota: input.maxquota ?? DEFAULT_DOMAIN_LIMITS.maxquota,
    quota: input.quota ?? DEFAULT_DOMAIN_LIMITS.quota,
  };
  // A quota given alone should not trip over the defaults of the others.
  if (input.maxquota === undefined) limits.maxquota = Math.min(limits.maxquota, limits.quota);
  if (input.defquota === undefined) limits.defquota = Math.min(limits.defquota, limits.maxquota);
  const problems = checkDomainLimits(limits);
  if (problems.length > 0) return refuse('invalid_limits', problems.join('; '), { problems });
  if (input.description !== undefined && input.description.length > 255) return refuse('invalid_limits', 'the description is longer than 255 characters');
  if (await getDomainForUpdate(tx, name)) return refuse('domain_exists', `domain ${name} already exists`, { domain: name });
  await insertDomain(tx, { domain: name, description: input.description ?? '', ...limits, active: input.active ?? 1 });
  const row = await getDomain(tx, name);
  if (!row) throw new Error(`domain ${name} vanished right after insert`);
  return { domain: row };
}

export interface DomainPatch extends Partial<DomainLimits> {
  description?: string;
  active?: 0 | 1;
}

export async function editDomain(tx: Queryable, domainName: string, patch: DomainPatch): Promise<{ domain: DomainRow; changed: string[] } | DomainRefusal> {
  const name = normalizeDomain(domainName);
  if (typeof name !== 'string') return refuse('invalid_domain', name.problem);
  const current = await getDomainForUpdate(tx, name);
  if (!current) return refuse('domain_missing', `domain ${name} does not exist`, { domain: name });
  const limits: DomainLimits = {
    mailboxes: patch.mailboxes ?? current.mailboxes,
    defquota: patch.defquota ?? current.defquota,
    maxquota: patch.maxquota ?? current.maxquota,
    quota: patch.quota ?? current.quota,
  };
  const problems = checkDomainLimits(limits);
  if (problems.length > 0) return refuse('invalid_limits', problems.join('; '), { problems });
  if (patch.description !== undefined && patch.description.length > 255) return refuse('invalid_limits', 'the description is longer than 255 characters');
  const usage = await domainUsage(tx, name, { lock: true });
  const below: string[] = [];
  if (limits.mailboxes < usage.mailboxes) below.push(`max mailboxes ${limits.mailboxes} < ${usage.mailboxes} existing mailboxes`);
  if (limits.quota * MIB < usage.quotaBytes) below.push(`domain quota ${limits.quota} MiB < ${Math.ceil(usage.quotaBytes / MIB)} MiB already assigned to mailboxes`);
  if (limits.maxquota * MIB < usage.maxQuotaBytes) below.push(`max quota ${limits.maxquota} MiB < the largest mailbox quota (${Math.ceil(usage.maxQuotaBytes / MIB)} MiB)`);
  if (below.length > 0) return refuse('limits_below_usage', `domain ${name}: ${below.join('; ')}`, { problems: below });
  const values: Record<string, string | number> = { ...limits };
  if (patch.description !== undefined) values.description = patch.description;
  if (patch.active !== undefined) values.active = patch.active;
  const before: Record<string, unknown> = { ...current };
  const changed = Object.keys(values).filter((k) => before[k] !== values[k]);
  if (changed.length > 0) await updateDomain(tx, name, Object.fromEntries(changed.map((k) => [k, values[k]])) as Parameters<typeof updateDomain>[2]);
  const row = await getDomain(tx, name);
  if (!row) throw new Error(`domain ${name} vanished during edit`);
  return { domain: row, changed };
}

/** How many mailboxes (and aliases) deleting the domain would take with it. */
export async function domainContents(q: Queryable, domain: string): Promise<{ mailboxes: number; aliases: number }> {
  const all = await listMailboxes(q, { domain, includeResources: true });
  return { mailboxes: all.length, aliases: await countAliasesOfDomain(q, domain) };
}

/**
 * Delete a domain. Refused while it has mailboxes unless `force`, which then
 * deletes those mailboxes (with their rows) in the same transaction. The
 * domain's aliases go with it, as in mailcow.
 */
export async function removeDomain(
  tx: Queryable,
  domainName: string,
  opts: { force?: boolean } = {},
): Promise<{ domain: string; deletedMailboxes: string[]; deletedAliases: number } | DomainRefusal> {
  const name = normalizeDomain(domainName);
  if (typeof name !== 'string') return refuse('invalid_domain', name.problem);
  const current = await getDomainForUpdate(tx, name);
  if (!current) return refuse('domain_missing', `domain ${name} does not exist`, { domain: name });
  const mailboxes = await listMailboxes(tx, { domain: name, includeResources: true });
  if (mailboxes.length > 0 && !opts.force) {
    return refuse(
      'domain_not_empty',
      `domain ${name} still has ${mailboxes.length} mailbox${mailboxes.length === 1 ? '' : 'es'}; delete them first (mailauth mailbox list --domain ${name}) or pass --force to delete them with the domain`,
      { mailboxes: mailboxes.length },
    );
  }
  // Counted first: the mailboxes' own aliases go with the mailboxes.
  const deletedAliases = await countAliasesOfDomain(tx, name);
  for (const m of mailboxes) await deleteMailbox(tx, m.username);
  await deleteAliasesOfDomain(tx, name);
  await deleteDomain(tx, name);
  return { domain: name, deletedMailboxes: mailboxes.map((m) => m.username), deletedAliases };
}
