/**
 * One byte budget (cache.max_bytes) for all caches. Fixed shares keep each
 * cache's bound predictable; a cache that is switched off (entries = 0) gives
 * its share to the others.
 */
export interface CacheBudget {
  verify: number;
  account: number;
  idp: number;
}

const SHARES = { verify: 1, account: 2, idp: 1 } as const;

export function splitBudget(maxBytes: number, entries: { verify: number; account: number; idp: number }): CacheBudget {
  const on = (k: keyof typeof SHARES) => (entries[k] > 0 ? SHARES[k] : 0);
  const total = on('verify') + on('account') + on('idp');
  if (total === 0) return { verify: 0, account: 0, idp: 0 };
  const part = (k: keyof typeof SHARES) => Math.floor((maxBytes * on(k)) / total);
  return { verify: part('verify'), account: part('account'), idp: part('idp') };
}
