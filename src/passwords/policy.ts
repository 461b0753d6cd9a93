import { HASH_SCHEMES } from './hash.js';
import { allSchemes } from './scheme-table.js';

export interface SchemeInfo {
  name: string;
  verify: true;
  hash: boolean;
  /** See the weak-scheme rule in scheme-table.ts. */
  weak: boolean;
}

export function listSchemes(): SchemeInfo[] {
  return allSchemes().map((spec) => ({
    name: spec.name,
    verify: true,
    hash: (HASH_SCHEMES as readonly string[]).includes(spec.name),
    weak: spec.weak,
  }));
}

/**
 * Case-insensitive; an entry ending in '*' matches by prefix ('PBKDF2*' covers PBKDF2
 * and PBKDF2-SHA512, '*' covers everything). A star anywhere else is literal.
 */
export function isSchemeAllowed(scheme: string, allowed: readonly string[]): boolean {
  if (typeof scheme !== 'string' || scheme === '') return false;
  const name = scheme.toUpperCase();
  return allowed.some((entry) => {
    const pattern = entry.toUpperCase();
    return pattern.endsWith('*') ? name.startsWith(pattern.slice(0, -1)) : name === pattern;
  });
}
