/**
 * Client addresses as throttle keys: IPv4 as is, IPv6 cut to a prefix (/64 by
 * default: one customer line or one cloud host gets a whole /64, so counting
 * single IPv6 addresses would give an attacker 2^64 fresh counters), IPv4-mapped
 * IPv6 as the IPv4 it carries. Trusted networks are matched with node:net's
 * BlockList.
 */
import { BlockList, isIP } from 'node:net';

/** The longest key text a caller's address can produce (anything odd is cut, never trusted). */
const MAX_RAW = 64;

function expandV6(address: string): number[] | null {
  let text = address;
  const zone = text.indexOf('%');
  if (zone >= 0) text = text.slice(0, zone);
  // An embedded dotted quad in the last 32 bits (::ffff:1.2.3.4): rewrite it as two groups.
  const lastColon = text.lastIndexOf(':');
  const tailText = text.slice(lastColon + 1);
  if (tailText.includes('.')) {
    const p = tailText.split('.').map(Number);
    if (p.length !== 4 || p.some((x) => !Number.isInteger(x) || x < 0 || x > 255)) return null;
    const hi = (((p[0] as number) << 8) | (p[1] as number)).toString(16);
    const lo = (((p[2] as number) << 8) | (p[3] as number)).toString(16);
    text = `${text.slice(0, lastColon + 1)}${hi}:${lo}`;
  }
  const halves = text.split('::');
  if (halves.length > 2) return null;
  const parse = (s: string): number[] => (s === '' ? [] : s.split(':').map((h) => (/^[0-9a-fA-F]{1,4}$/.test(h) ? Number.parseInt(h, 16) : NaN)));
  const head = parse(halves[0] ?? '');
  const rest = halves.length === 2 ? parse(halves[1] ?? '') : [];
  const fill = 8 - head.length - rest.length;
  if (halves.length === 1 ? fill !== 0 : fill < 1) return null;
  const groups = [...head, ...new Array<number>(halves.length === 2 ? fill : 0).fill(0), ...rest];
  if (groups.length !== 8 || groups.some((g) => !Number.isInteger(g))) return null;
  return groups;
}

/**
 * The counter key of a client address: "192.0.2.7", "2001:db8:1:2::/64"; null when
 * there is none (Dovecot sends no rip for `doveadm auth test`). Not an address: the
 * text itself, cut short (it still gets its own counter; it is never trusted).
 */
export function clientKey(ip: string, ipv6Prefix: number): string | null {
  if (ip === '') return null;
  const family = isIP(ip);
  if (family === 4) return ip;
  if (family !== 6) return `?${ip.slice(0, MAX_RAW)}`;
  const g = expandV6(ip);
  if (g === null) return `?${ip.slice(0, MAX_RAW)}`;
  // ::ffff:a.b.c.d is an IPv4 client seen through a dual-stack socket.
  if (g[0] === 0 && g[1] === 0 && g[2] === 0 && g[3] === 0 && g[4] === 0 && g[5] === 0xffff) {
    return `${(g[6] as number) >> 8}.${(g[6] as number) & 0xff}.${(g[7] as number) >> 8}.${(g[7] as number) & 0xff}`;
  }
  const out: string[] = [];
  let bits = ipv6Prefix;
  for (let i = 0; i < 8; i++) {
    const keep = Math.max(0, Math.min(16, bits));
    bits -= 16;
    const mask = keep === 0 ? 0 : (0xffff << (16 - keep)) & 0xffff;
    out.push(((g[i] as number) & mask).toString(16));
  }
  return ipv6Prefix === 128 ? out.join(':') : `${out.join(':')}/${ipv6Prefix}`;
}

export interface NetworkMatcher {
  contains(ip: string): boolean;
}

/** CIDRs as "address/prefix" (config/ has validated and normalised them). */
export function networkMatcher(cidrs: readonly string[]): NetworkMatcher {
  if (cidrs.length === 0) return { contains: () => false };
  const list = new BlockList();
  for (const c of cidrs) {
    const [address = '', prefix = ''] = c.split('/');
    list.addSubnet(address, Number(prefix), isIP(address) === 6 ? 'ipv6' : 'ipv4');
  }
  return {
    contains(ip) {
      const family = isIP(ip);
      if (family === 0) return false;
      if (family === 4) return list.check(ip, 'ipv4');
      if (list.check(ip, 'ipv6')) return true;
      // A dual-stack socket shows IPv4 clients as ::ffff:a.b.c.d.
      const mapped = /^::ffff:(\d+\.\d+\.\d+\.\d+)$/i.exec(ip);
      return mapped !== null && list.check(mapped[1] as string, 'ipv4');
    },
  };
}
