/**
 * A tiny declarative validator for the config tree. Hand-written because the
 * messages are the product here ("database.pool_size: must be an integer
 * between 1 and 100, got "ten""), every problem is reported at once, and the
 * schema is ~40 keys; a JSON-schema library would need a custom message layer
 * larger than this file.
 */
import { parseDuration } from './duration.js';

export type Check<T> = (value: unknown, path: string, problems: string[]) => T | undefined;

export function show(value: unknown): string {
  if (typeof value === 'string') return JSON.stringify(value);
  if (value === null) return 'null';
  if (Array.isArray(value)) return 'a list';
  if (typeof value === 'object') return 'a mapping';
  return String(value);
}

function fail(problems: string[], path: string, what: string, value: unknown): undefined {
  problems.push(`${path}: must be ${what}, got ${show(value)}`);
  return undefined;
}

export const int = (min: number, max: number): Check<number> => (v, path, p) =>
  typeof v === 'number' && Number.isInteger(v) && v >= min && v <= max
    ? v
    : fail(p, path, `an integer between ${min} and ${max}`, v);

export const num = (min: number, max: number): Check<number> => (v, path, p) =>
  typeof v === 'number' && Number.isFinite(v) && v >= min && v <= max ? v : fail(p, path, `a number between ${min} and ${max}`, v);

export const bool: Check<boolean> = (v, path, p) => (typeof v === 'boolean' ? v : fail(p, path, 'true or false', v));

export const str = (opts: { nonEmpty?: boolean; pattern?: RegExp; what?: string } = {}): Check<string> => (v, path, p) => {
  if (typeof v !== 'string') return fail(p, path, opts.what ?? 'a string', v);
  if (opts.nonEmpty && v.trim() === '') return fail(p, path, opts.what ?? 'a non-empty string', v);
  if (opts.pattern && !opts.pattern.test(v)) return fail(p, path, opts.what ?? `a string matching ${opts.pattern}`, v);
  return v;
};

export const oneOf = <T extends string>(values: readonly T[]): Check<T> => (v, path, p) =>
  typeof v === 'string' && (values as readonly string[]).includes(v) ? (v as T) : fail(p, path, `one of ${values.join(', ')}`, v);

export const duration = (minMs: number, maxMs: number): Check<number> => (v, path, p) => {
  const ms = typeof v === 'string' ? parseDuration(v) : null;
  if (ms === null) return fail(p, path, 'a duration with a unit such as "500ms", "10s", "5m" or "1h"', v);
  if (ms < minMs || ms > maxMs) return fail(p, path, `a duration between ${minMs}ms and ${maxMs}ms`, v);
  return ms;
};

export const list = <T>(item: Check<T>, opts: { min?: number } = {}): Check<T[]> => (v, path, p) => {
  if (!Array.isArray(v)) return fail(p, path, 'a list', v);
  if (opts.min !== undefined && v.length < opts.min) return fail(p, path, `a list of at least ${opts.min} item(s)`, v);
  const out: T[] = [];
  let ok = true;
  v.forEach((x, i) => {
    const r = item(x, `${path}[${i}]`, p);
    if (r === undefined) ok = false;
    else out.push(r);
  });
  return ok ? out : undefined;
};

export const nullable = <T>(inner: Check<T>): Check<T | null> => (v, path, p) => (v === null ? null : inner(v, path, p));

export const record = <T>(key: RegExp, value: Check<T>): Check<Record<string, T>> => (v, path, p) => {
  if (typeof v !== 'object' || v === null || Array.isArray(v)) return fail(p, path, 'a mapping', v);
  const out: Record<string, T> = {};
  let ok = true;
  for (const [k, x] of Object.entries(v)) {
    if (!key.test(k)) {
      p.push(`${path}.${k}: invalid key name`);
      ok = false;
      continue;
    }
    const r = value(x, `${path}.${k}`, p);
    if (r === undefined) ok = false;
    else out[k] = r;
  }
  return ok ? out : undefined;
};

type Spec = Record<string, { check: Check<unknown>; default: unknown }>;

export function field<T>(check: Check<T>, dflt: T): { check: Check<T>; default: T } {
  return { check, default: dflt };
}

/** A mapping with known keys: unknown keys are reported with the list of known ones. */
export function section<S extends Spec>(spec: S): Check<{ [K in keyof S]: S[K] extends { check: Check<infer T> } ? T : never }> {
  return (v, path, p) => {
    const input = v === undefined || v === null ? {} : v;
    if (typeof input !== 'object' || Array.isArray(input)) return fail(p, path, 'a mapping', v);
    const out: Record<string, unknown> = {};
    let ok = true;
    for (const k of Object.keys(input)) {
      if (!(k in spec)) {
        p.push(`${path ? `${path}.` : ''}${k}: unknown key (known: ${Object.keys(spec).join(', ')})`);
        ok = false;
      }
    }
    for (const [k, f] of Object.entries(spec)) {
      const raw = (input as Record<string, unknown>)[k];
      if (raw === undefined) {
        // A missing sub-section still gets its own defaults.
        if (f.default === undefined) {
          const r = f.check(undefined, path ? `${path}.${k}` : k, p);
          if (r === undefined) ok = false;
          else out[k] = r;
        } else out[k] = f.default;
        continue;
      }
      const r = f.check(raw, path ? `${path}.${k}` : k, p);
      if (r === undefined) ok = false;
      else out[k] = r;
    }
    return ok ? (out as never) : undefined;
  };
}
