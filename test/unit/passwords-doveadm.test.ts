/**
 * Hashes written by mailauth must be readable by the real Dovecot: each one is
 * checked with `doveadm pw -t`. Missing doveadm fails the run in CI (CI=true)
 * and is skipped, loudly, elsewhere.
 */
import { execFile, spawnSync } from 'node:child_process';
import { promisify } from 'node:util';
import t from 'tap';
import { hash, type HashScheme } from '../../src/passwords/index.js';

const run = promisify(execFile);

const SCHEMES: HashScheme[] = ['BLF-CRYPT', 'ARGON2ID', 'ARGON2I', 'SHA512-CRYPT', 'SHA256-CRYPT', 'SSHA256', 'SSHA512'];
const PASSWORDS = ['password', 'Grüße, 世界! 🔑', `${'long passphrase '.repeat(6)}$'"\\`];

const probe = spawnSync('doveadm', ['pw', '-l'], { encoding: 'utf8' });
const available = probe.error === undefined && probe.status === 0;

async function doveadmAccepts(stored: string, password: string): Promise<boolean> {
  try {
    await run('doveadm', ['pw', '-t', stored, '-p', password]);
    return true;
  } catch {
    return false;
  }
}

if (!available) {
  const why = probe.error ? probe.error.message : `exit ${probe.status}: ${probe.stderr}`;
  if (process.env.CI === 'true') {
    t.fail(`doveadm is required in CI to cross-check mailauth hashes against Dovecot (install dovecot-core): ${why}`);
  } else {
    const skip = `SKIPPED: doveadm not on PATH (${why}) — mailauth-written hashes are NOT checked against Dovecot; install dovecot-core`;
    t.test('mailauth hashes verified by doveadm', { skip }, async () => {});
  }
} else {
  const listed = new Set(probe.stdout.trim().split(/\s+/));
  t.test('mailauth hashes verified by doveadm', async (t) => {
    for (const scheme of SCHEMES) {
      t.ok(listed.has(scheme), `this doveadm supports ${scheme}`);
      for (const password of PASSWORDS) {
        const stored = await hash(scheme, password, { bcryptCost: 5 });
        t.ok(await doveadmAccepts(stored, password), `doveadm pw -t accepts ${scheme} for ${JSON.stringify(password).slice(0, 20)}`);
        // Prefix, not suffix: bcrypt reads only the first 72 bytes.
        t.notOk(await doveadmAccepts(stored, `x${password}`), `doveadm pw -t rejects a wrong password for ${scheme}`);
      }
    }
    t.ok(await doveadmAccepts(await hash('BLF-CRYPT', 'password'), 'password'), 'default bcrypt cost');
  });
}
