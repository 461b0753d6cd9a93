/**
 * A rough, deterministic estimate of what a value costs on V8's heap, for the
 * caches' byte bounds. It is meant to be in the right range (within ~2×), not
 * exact: the bound exists so a flood of unusual entries cannot exhaust memory.
 */
const OBJECT = 32; // header + a few in-object slots
const SLOT = 8; // one property or array element pointer
const STRING = 16; // string header
const NUMBER = 16; // a boxed double (small integers are free, but be pessimistic)

export function estimateBytes(value: unknown, depth = 0): number {
  if (depth > 8) return 0; // the caches hold flat rows; deeper means a bug, not a need to count it
  switch (typeof value) {
    case 'string':
      return STRING + (/^[\x00-\xff]*$/.test(value) ? value.length : value.length * 2);
    case 'number':
      return NUMBER;
    case 'boolean':
    case 'undefined':
      return 0;
    case 'object': {
      if (value === null) return 0;
      if (Array.isArray(value)) {
        let n = OBJECT + value.length * SLOT;
        for (const v of value) n += estimateBytes(v, depth + 1);
        return n;
      }
      let n = OBJECT;
      for (const [k, v] of Object.entries(value as Record<string, unknown>)) {
        // Property names of rows are shared across objects (hidden classes), so only the slot counts.
        void k;
        n += SLOT + estimateBytes(v, depth + 1);
      }
      return n;
    }
    default:
      return SLOT;
  }
}
