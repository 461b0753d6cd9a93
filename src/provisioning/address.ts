/**
 * Mailbox addresses and domain names as mailcow stores them: trimmed,
 * lower-case, the domain in its ASCII (punycode) form.
 */
import { domainToASCII } from 'node:url';

const LABEL = /^[a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?$/;
// RFC 5322 dot-atom, ASCII only (mailcow's FILTER_VALIDATE_EMAIL rejects the rest).
const LOCAL_PART = /^[a-z0-9!#$%&'*+/=?^_`{|}~-]+(?:\.[a-z0-9!#$%&'*+/=?^_`{|}~-]+)*$/;

/** A domain's stored form, or a problem description. */
export function normalizeDomain(input: string): string | { problem: string } {
  const trimmed = input.trim().toLowerCase().replace(/\.$/, '');
  if (trimmed === '') return { problem: 'the domain name is empty' };
  const ascii = domainToASCII(trimmed);
  if (ascii === '') return { problem: `"${input}" is not a valid domain name` };
  if (ascii.length > 253) return { problem: `domain name "${input}" is longer than 253 characters` };
  const labels = ascii.split('.');
  if (labels.length < 2) return { problem: `"${input}" is not a fully qualified domain name (expected e.g. example.org)` };
  if (!labels.every((l) => LABEL.test(l))) return { problem: `"${input}" is not a valid domain name` };
  if (/^\d+$/.test(labels[labels.length - 1] as string)) return { problem: `"${input}" looks like an IP address, not a domain name` };
  return ascii;
}

export interface Address {
  username: string;
  localPart: string;
  domain: string;
}

/** A mailbox address's stored form, or a problem description. */
export function normalizeAddress(input: string): Address | { problem: string } {
  const trimmed = input.trim();
  const at = trimmed.lastIndexOf('@');
  if (at <= 0 || at === trimmed.length - 1) return { problem: `"${input}" is not an email address (expected local-part@domain)` };
  const localPart = trimmed.slice(0, at).toLowerCase();
  if (localPart.length > 64 || !LOCAL_PART.test(localPart)) {
    return { problem: `"${input}": the local part "${trimmed.slice(0, at)}" is not a valid mailbox name` };
  }
  const domain = normalizeDomain(trimmed.slice(at + 1));
  if (typeof domain !== 'string') return domain;
  const username = `${localPart}@${domain}`;
  if (username.length > 255) return { problem: `"${input}" is longer than 255 characters` };
  return { username, localPart, domain };
}
