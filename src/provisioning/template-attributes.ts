/**
 * The attributes of a mailcow mailbox template: which keys exist, which values
 * each accepts, and how a `key=value` flag becomes a stored value. mailcow's
 * own Default template stores flags as numbers (1/0) while templates saved from
 * its UI store strings ("1"/"0"), so both forms are accepted.
 */

/** Flags: "0"/"1" (or 0/1). */
export const TEMPLATE_FLAG_KEYS = [
  'force_pw_update',
  'force_tfa',
  'sogo_access',
  'tls_enforce_in',
  'tls_enforce_out',
  'imap_access',
  'pop3_access',
  'smtp_access',
  'sieve_access',
  'eas_access',
  'dav_access',
] as const;

/** `acl_<column>` flags, one per `user_acl` column. `acl_pw_reset` exists in current mailcow only. */
export const TEMPLATE_ACL_KEYS = [
  'acl_spam_alias',
  'acl_tls_policy',
  'acl_spam_score',
  'acl_spam_policy',
  'acl_delimiter_action',
  'acl_syncjobs',
  'acl_eas_reset',
  'acl_sogo_profile_reset',
  'acl_pushover',
  'acl_quarantine',
  'acl_quarantine_attachments',
  'acl_quarantine_notification',
  'acl_quarantine_category',
  'acl_app_passwds',
  'acl_pw_reset',
] as const;

export const QUARANTINE_NOTIFICATION = ['never', 'hourly', 'daily', 'weekly'] as const;
export const QUARANTINE_CATEGORY = ['add_header', 'reject', 'all'] as const;
export const RATE_LIMIT_FRAMES = ['s', 'm', 'h', 'd'] as const;
export const TAGGED_MAIL_HANDLER = ['none', 'subfolder', 'subject'] as const;

type Check = (v: unknown) => string | null;

const flag: Check = (v) => (v === '0' || v === '1' || v === 0 || v === 1 ? null : 'must be "0" or "1"');
const oneOf =
  (allowed: readonly string[]): Check =>
  (v) =>
    typeof v === 'string' && allowed.includes(v) ? null : `must be one of ${allowed.join(', ')}`;

const CHECKS: Readonly<Record<string, Check>> = {
  quota: (v) =>
    typeof v === 'number' && Number.isSafeInteger(v) && v >= 0
      ? null
      : 'must be a non-negative integer number of bytes (0 = the domain default quota)',
  active: (v) =>
    v === '0' || v === '1' || v === '2' || v === 0 || v === 1 || v === 2 ? null : 'must be "0" (disabled), "1" (active) or "2" (receive only, no login)',
  tags: (v) =>
    Array.isArray(v) && v.every((t) => typeof t === 'string' && t.length > 0 && t.length <= 255)
      ? null
      : 'must be an array of non-empty strings',
  quarantine_notification: oneOf(QUARANTINE_NOTIFICATION),
  quarantine_category: oneOf(QUARANTINE_CATEGORY),
  rl_frame: oneOf(RATE_LIMIT_FRAMES),
  rl_value: (v) =>
    v === '' || (typeof v === 'string' && /^[1-9]\d{0,8}$/.test(v)) || (typeof v === 'number' && Number.isSafeInteger(v) && v > 0)
      ? null
      : 'must be "" (no limit) or a positive integer',
  tagged_mail_handler: oneOf(TAGGED_MAIL_HANDLER),
  ...Object.fromEntries([...TEMPLATE_FLAG_KEYS, ...TEMPLATE_ACL_KEYS].map((k) => [k, flag])),
};

/** Every key a mailbox template may hold, in display order. */
export const TEMPLATE_KEYS: readonly string[] = [
  'quota',
  'active',
  'tags',
  ...TEMPLATE_FLAG_KEYS,
  'quarantine_notification',
  'quarantine_category',
  'rl_frame',
  'rl_value',
  'tagged_mail_handler',
  ...TEMPLATE_ACL_KEYS,
];

export function isTemplateKey(key: string): boolean {
  return Object.hasOwn(CHECKS, key);
}

/**
 * Every problem with a template's attributes, one message each; empty when valid.
 * `allowUnknown` is for templates read from a database a newer mailcow wrote.
 */
export function validateTemplateAttributes(obj: unknown, opts: { allowUnknown?: boolean } = {}): string[] {
  if (typeof obj !== 'object' || obj === null || Array.isArray(obj)) return ['template attributes must be a JSON object'];
  const problems: string[] = [];
  const unknown: string[] = [];
  for (const [key, value] of Object.entries(obj)) {
    const check = CHECKS[key];
    if (!check) {
      unknown.push(key);
      continue;
    }
    const problem = check(value);
    if (problem) problems.push(`${key}: ${problem}, got ${JSON.stringify(value)}`);
  }
  if (unknown.length > 0 && !opts.allowUnknown) {
    problems.push(
      `unknown attribute${unknown.length > 1 ? 's' : ''} ${unknown.map((k) => JSON.stringify(k)).join(', ')}; known attributes: ${TEMPLATE_KEYS.join(', ')}`,
    );
  }
  return problems;
}

/**
 * Turn the text of a `--set key=value` flag into the value stored for `key`:
 * quota → number of bytes, tags → comma-separated list, everything else the
 * string as given. Validation happens afterwards, on the whole object.
 */
export function coerceTemplateValue(key: string, text: string): unknown {
  if (key === 'quota') return /^\d+$/.test(text) ? Number(text) : text;
  if (key === 'tags') return text.trim() === '' ? [] : text.split(',').map((t) => t.trim());
  return text;
}

/** Parse `key=value`; the key must be known (the message lists the known ones). */
export function parseTemplateSetting(setting: string): { key: string; value: unknown } | string {
  const eq = setting.indexOf('=');
  if (eq <= 0) return `"${setting}" is not key=value`;
  const key = setting.slice(0, eq).trim();
  if (!isTemplateKey(key)) return `unknown attribute "${key}"; known attributes: ${TEMPLATE_KEYS.join(', ')}`;
  return { key, value: coerceTemplateValue(key, setting.slice(eq + 1)) };
}

/** "1"/1 → "1", anything else → "0": how mailcow's strval(intval(x)) reads a flag. */
export function flagString(v: unknown): '0' | '1' {
  return v === 1 || v === '1' || v === true ? '1' : '0';
}
