/**
 * Every Dovecot scheme label mailcow accepts, with how its payload is encoded and
 * which family checks it.
 *
 * Weak-scheme rule: a scheme is weak when a stolen hash can be tested cheaply —
 * it stores the plaintext (CLEAR, CLEARTEXT, PLAIN, PLAIN-TRUNC), is a single
 * digest pass with or without salt (PLAIN-MD4, PLAIN-MD5, LDAP-MD5, SHA, SHA1,
 * SHA256, SHA512, SMD5, SSHA, SSHA256, SSHA512), or has a fixed, small work factor
 * or broken design (DES-CRYPT: 8 characters, 12-bit salt; MD5-CRYPT and its alias
 * MD5: 1000 fixed MD5 rounds). A label that may hold a weak format (CRYPT) is weak.
 * Schemes with a tunable work factor (SHA256/512-CRYPT, PBKDF2*, BLF-CRYPT,
 * ARGON2*) are not weak as schemes, though a single row may still use a low cost.
 */
import { verifyArgon2 } from './argon2.js';
import { ANY_CRYPT, cryptFormatOf, verifyCrypt, type CryptFormat, type VerifyEnv } from './crypt.js';
import { DIGEST_LENGTH, verifyDigest, verifyPlain, verifyPlainTrunc, verifySalted, type DigestAlgorithm } from './digest.js';
import { asciiText, decodeBase64Padded, decodeHex } from './encoding.js';
import { verifyDovecotPbkdf2, verifyPbkdf2Sha512 } from './pbkdf2.js';
import { malformed, type VerifyResult } from './result.js';

export type PayloadEncoding = 'b64' | 'hex';

export interface SchemeSpec {
  readonly name: string;
  /** How the payload is stored when the label has no `.b64`/`.hex` suffix. */
  readonly encoding: 'none' | PayloadEncoding;
  /**
   * Fixed raw size of digest schemes. Without a suffix Dovecot then guesses the
   * encoding: hex when the text is exactly twice this long, otherwise base64.
   */
  readonly rawLength?: number;
  /** See the weak-scheme rule above. Which schemes hash() may write is hash.ts's business. */
  readonly weak: boolean;
  readonly check: (raw: Buffer, password: Buffer, env: VerifyEnv) => Promise<VerifyResult> | VerifyResult;
  /** The format actually stored, for labels that admit several. */
  readonly effective?: (raw: Buffer) => string | null;
}

/** Text formats (crypt, PHC, PBKDF2) are parsed from printable ASCII only. */
function textCheck(
  label: string,
  check: (text: string, password: Buffer, env: VerifyEnv) => Promise<VerifyResult>,
): (raw: Buffer, password: Buffer, env: VerifyEnv) => Promise<VerifyResult> {
  return async (raw, password, env) => {
    const text = asciiText(raw);
    if (text === null) return malformed(label, 'payload is not printable ASCII');
    return check(text, password, env);
  };
}

function crypt(name: string, accepted: readonly CryptFormat[], weak: boolean): SchemeSpec {
  return {
    name,
    encoding: 'none',
    weak,
    check: textCheck(name, (text, password, env) => verifyCrypt(text, password, name, accepted, env)),
    effective: (raw) => {
      const format = cryptFormatOf(raw.toString('latin1'));
      return format !== null && accepted.includes(format) ? format : null;
    },
  };
}

function argon2(name: string): SchemeSpec {
  return {
    name,
    encoding: 'none',
    weak: false,
    check: textCheck(name, (text, password) => verifyArgon2(text, password, name)),
    effective: (raw) => {
      const text = raw.toString('latin1');
      if (text.startsWith('$argon2id$')) return 'ARGON2ID';
      return text.startsWith('$argon2i$') ? 'ARGON2I' : null;
    },
  };
}

function digest(name: string, algorithm: DigestAlgorithm, encoding: PayloadEncoding): SchemeSpec {
  return {
    name,
    encoding,
    rawLength: DIGEST_LENGTH[algorithm],
    weak: true,
    check: (raw, password) => verifyDigest(raw, password, name, algorithm),
  };
}

function salted(name: string, algorithm: DigestAlgorithm): SchemeSpec {
  return { name, encoding: 'b64', weak: true, check: (raw, password) => verifySalted(raw, password, name, algorithm) };
}

function plain(name: string): SchemeSpec {
  return { name, encoding: 'none', weak: true, check: (raw, password) => verifyPlain(raw, password, name) };
}

const PLAIN_MD5 = digest('PLAIN-MD5', 'md5', 'hex');

/**
 * {MD5} is Dovecot's historical name for MD5-crypt, but Dovecot's md5_verify also
 * takes a bare MD5 digest (hex or base64) when the value does not start with `$1$`.
 */
const md5: SchemeSpec = {
  name: 'MD5',
  encoding: 'none',
  weak: true,
  check: textCheck('MD5', async (text, password, env) => {
    if (text.startsWith('$1$')) return verifyCrypt(text, password, 'MD5', ['MD5-CRYPT'], env);
    const raw = decodePayload(PLAIN_MD5, undefined, text);
    if (typeof raw === 'string') return malformed('MD5', `neither $1$ MD5-crypt nor an MD5 digest (${raw})`);
    return verifyDigest(raw, password, 'PLAIN-MD5', 'md5');
  }),
  effective: (raw) => {
    const text = raw.toString('latin1');
    if (text.startsWith('$1$')) return 'MD5-CRYPT';
    return typeof decodePayload(PLAIN_MD5, undefined, text) === 'string' ? null : 'PLAIN-MD5';
  },
};

const SCHEMES: readonly SchemeSpec[] = [
  argon2('ARGON2I'),
  argon2('ARGON2ID'),
  crypt('BLF-CRYPT', ['BLF-CRYPT'], false),
  crypt('CRYPT', ANY_CRYPT, true),
  crypt('DES-CRYPT', ANY_CRYPT, true),
  crypt('MD5-CRYPT', ['MD5-CRYPT'], true),
  md5,
  crypt('SHA256-CRYPT', ANY_CRYPT, false),
  crypt('SHA512-CRYPT', ANY_CRYPT, false),
  plain('CLEAR'),
  plain('CLEARTEXT'),
  plain('PLAIN'),
  digest('LDAP-MD5', 'md5', 'b64'),
  {
    name: 'PBKDF2',
    encoding: 'none',
    weak: false,
    check: textCheck('PBKDF2', verifyDovecotPbkdf2),
  },
  {
    name: 'PBKDF2-SHA512',
    encoding: 'none',
    weak: false,
    check: textCheck('PBKDF2-SHA512', verifyPbkdf2Sha512),
  },
  digest('PLAIN-MD4', 'md4', 'hex'),
  PLAIN_MD5,
  { name: 'PLAIN-TRUNC', encoding: 'none', weak: true, check: verifyPlainTrunc },
  digest('SHA', 'sha1', 'b64'),
  digest('SHA1', 'sha1', 'b64'),
  digest('SHA256', 'sha256', 'b64'),
  digest('SHA512', 'sha512', 'b64'),
  salted('SMD5', 'md5'),
  salted('SSHA', 'sha1'),
  salted('SSHA256', 'sha256'),
  salted('SSHA512', 'sha512'),
];

const BY_NAME = new Map(SCHEMES.map((spec) => [spec.name, spec]));

export function allSchemes(): readonly SchemeSpec[] {
  return SCHEMES;
}

export function lookupScheme(name: string): SchemeSpec | undefined {
  return BY_NAME.get(name.toUpperCase());
}

/**
 * Dovecot's password_decode(): the suffix wins; without one, digest schemes guess
 * between hex and base64 by length; base64 needs padding. Returns the raw payload, or
 * a reason string (which never quotes the payload).
 */
export function decodePayload(spec: SchemeSpec, explicit: PayloadEncoding | undefined, payload: string): Buffer | string {
  let encoding = explicit ?? spec.encoding;
  let raw: Buffer | null = null;
  if (explicit === undefined && spec.rawLength !== undefined && encoding !== 'none') {
    if (payload.length === spec.rawLength * 2) raw = decodeHex(payload);
    encoding = 'b64';
  }
  if (raw === null) {
    switch (encoding) {
      case 'none':
        raw = Buffer.from(payload, 'utf8');
        break;
      case 'hex':
        raw = decodeHex(payload);
        if (raw === null) return 'payload is not valid hex';
        break;
      case 'b64':
        raw = decodeBase64Padded(payload);
        if (raw === null) return 'payload is not valid base64';
        break;
    }
  }
  if (spec.rawLength !== undefined && raw.length !== spec.rawLength) {
    return `digest is ${raw.length} bytes, expected ${spec.rawLength}`;
  }
  return raw;
}
