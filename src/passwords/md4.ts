/**
 * MD4 (RFC 1320), needed only to verify {PLAIN-MD4} (NT-hash style) rows.
 * Node 20 links OpenSSL 3, where MD4 lives in the legacy provider and
 * createHash('md4') throws; loading that provider is a process-wide setting we do
 * not want a library to change, and the algorithm is a page of code.
 */

function rotl(x: number, n: number): number {
  return (x << n) | (x >>> (32 - n));
}

export function md4(message: Uint8Array): Buffer {
  const bitLength = message.length * 8;
  const padded = Buffer.alloc((((message.length + 8) >> 6) + 1) * 64);
  padded.set(message);
  padded[message.length] = 0x80;
  // 64-bit little-endian length; messages here are far below 2^32 bits' high word overflow.
  padded.writeUInt32LE(bitLength >>> 0, padded.length - 8);
  padded.writeUInt32LE(Math.floor(bitLength / 0x1_0000_0000), padded.length - 4);

  let a = 0x67452301;
  let b = 0xefcdab89;
  let c = 0x98badcfe;
  let d = 0x10325476;
  const x = new Array<number>(16).fill(0);

  for (let offset = 0; offset < padded.length; offset += 64) {
    for (let i = 0; i < 16; i++) x[i] = padded.readInt32LE(offset + i * 4);
    const word = (i: number): number => x[i] as number;
    const aa = a;
    const bb = b;
    const cc = c;
    const dd = d;

    const f = (p: number, q: number, r: number, s: number, k: number, n: number): number =>
      rotl((p + ((q & r) | (~q & s)) + word(k)) | 0, n);
    for (const k of [0, 4, 8, 12]) {
      a = f(a, b, c, d, k, 3);
      d = f(d, a, b, c, k + 1, 7);
      c = f(c, d, a, b, k + 2, 11);
      b = f(b, c, d, a, k + 3, 19);
    }

    const g = (p: number, q: number, r: number, s: number, k: number, n: number): number =>
      rotl((p + ((q & r) | (q & s) | (r & s)) + word(k) + 0x5a827999) | 0, n);
    for (const k of [0, 1, 2, 3]) {
      a = g(a, b, c, d, k, 3);
      d = g(d, a, b, c, k + 4, 5);
      c = g(c, d, a, b, k + 8, 9);
      b = g(b, c, d, a, k + 12, 13);
    }

    const h = (p: number, q: number, r: number, s: number, k: number, n: number): number =>
      rotl((p + (q ^ r ^ s) + word(k) + 0x6ed9eba1) | 0, n);
    for (const k of [0, 2, 1, 3]) {
      a = h(a, b, c, d, k, 3);
      d = h(d, a, b, c, k + 8, 9);
      c = h(c, d, a, b, k + 4, 11);
      b = h(b, c, d, a, k + 12, 15);
    }

    a = (a + aa) | 0;
    b = (b + bb) | 0;
    c = (c + cc) | 0;
    d = (d + dd) | 0;
  }

  const out = Buffer.alloc(16);
  out.writeInt32LE(a, 0);
  out.writeInt32LE(b, 4);
  out.writeInt32LE(c, 8);
  out.writeInt32LE(d, 12);
  return out;
}
