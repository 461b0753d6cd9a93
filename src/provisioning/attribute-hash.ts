/**
 * mailcow's `attribute_hash`: `sha1(json_encode($row['attributes']))`, where the
 * attributes column is still the JSON *text* as stored. So the hash is the sha1
 * of that text encoded once more as a PHP JSON string literal. Reproducing PHP's
 * escaping exactly makes mailauth and mailcow agree on which mailboxes are up to
 * date with their template, whichever of the two wrote them.
 */
import { createHash } from 'node:crypto';

const SHORT_ESCAPES: Readonly<Record<string, string>> = {
  '"': '\\"',
  '\\': '\\\\',
  '/': '\\/',
  '\b': '\\b',
  '\f': '\\f',
  '\n': '\\n',
  '\r': '\\r',
  '\t': '\\t',
};

/** A string as PHP's json_encode() writes it with default flags (escaped slashes, \uXXXX for non-ASCII). */
export function phpJsonString(s: string): string {
  let out = '"';
  for (let i = 0; i < s.length; i++) {
    const ch = s[i] as string;
    const code = s.charCodeAt(i);
    const short = SHORT_ESCAPES[ch];
    if (short) out += short;
    else if (code < 0x20 || code > 0x7e) out += (code === 0x7f ? ch : `\\u${code.toString(16).padStart(4, '0')}`);
    else out += ch;
  }
  return out + '"';
}

/** A JSON value as PHP's json_encode() writes it (what mailcow stores in JSON columns). */
export function phpJsonEncode(v: unknown): string {
  if (v === null || v === undefined) return 'null';
  if (typeof v === 'string') return phpJsonString(v);
  if (typeof v === 'number') return Number.isFinite(v) ? String(v) : '0';
  if (typeof v === 'boolean') return v ? 'true' : 'false';
  if (Array.isArray(v)) return `[${v.map(phpJsonEncode).join(',')}]`;
  if (typeof v === 'object') {
    const entries = Object.entries(v as Record<string, unknown>);
    // PHP decodes {} into an empty array, which it encodes as [].
    if (entries.length === 0) return '[]';
    return `{${entries.map(([k, x]) => `${phpJsonString(k)}:${phpJsonEncode(x)}`).join(',')}}`;
  }
  return 'null';
}

/**
 * The attribute hash of a template. Pass the column text as stored when you
 * have it (MariaDB returns it verbatim); otherwise the parsed attributes are
 * re-encoded the way mailcow would have written them.
 */
export function templateAttributeHash(template: { attributes: Record<string, unknown>; attributesText?: string | undefined }): string {
  const text = template.attributesText ?? phpJsonEncode(template.attributes);
  return createHash('sha1').update(phpJsonString(text), 'utf8').digest('hex');
}
