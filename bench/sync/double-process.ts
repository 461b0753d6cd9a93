/**
 * The Keycloak double with N generated users, in a process of its own so its
 * memory and CPU do not count against the sync being measured. Prints one
 * JSON line {serverUrl, realm} when ready; stops on SIGTERM or when stdin closes.
 *
 *   node node_modules/.cache/mailauth-bench-sync/bench/sync/double-process.js N [DOMAINS]
 */
import { startKeycloakDouble } from '../../test/helpers/keycloak-double.js';

const n = Number(process.argv[2] ?? 1000);
const domains = Number(process.argv[3] ?? 1);
const kc = await startKeycloakDouble({ accessTokenTtlSec: 3600 });
for (let i = 0; i < n; i++) {
  const local = `user${String(i).padStart(6, '0')}`;
  kc.addUser({
    username: local,
    email: `${local}@bench${i % domains}.example`,
    firstName: 'Bench',
    lastName: `User ${i}`,
    enabled: true,
    emailVerified: true,
    attributes: { mailcow_template: [i % 10 === 0 ? 'staff' : 'student'] },
  });
}
// Sort once now, not inside the first timed request.
await fetch(`${kc.serverUrl}/realms/${kc.realm}/.well-known/openid-configuration`);
process.stdout.write(JSON.stringify({ serverUrl: kc.serverUrl, realm: kc.realm }) + '\n');
const stop = (): void => {
  void kc.close().then(() => process.exit(0));
};
process.on('SIGTERM', stop);
process.stdin.on('end', stop);
process.stdin.resume();
