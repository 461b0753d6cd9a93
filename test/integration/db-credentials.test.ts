/** The narrow credential read behind the account cache, on the real MariaDB: what it returns and in which order. */
import t from 'tap';
import { findCredentials, findCredentialsMany, insertAppPassword } from '../../src/db/index.js';
import { createTestDatabase, seedDomain, seedMailbox } from '../helpers/db.js';

const access = { imap: 1, pop3: 0, smtp: 1, sieve: 0, eas: 0, dav: 1 };

t.test('active app passwords in id order, inactive ones left out, absent users missing', async (t) => {
  const tdb = await createTestDatabase(t);
  await seedDomain(tdb, 'example.org');
  await seedDomain(tdb, 'off.example', { active: 0 });
  await seedMailbox(tdb, 'alice@example.org', '{PLAIN}a');
  await seedMailbox(tdb, 'bob@off.example', '{PLAIN}b', { active: 2, authsource: 'keycloak' });
  await seedMailbox(tdb, 'carol@example.org', '{PLAIN}c');
  // Interleaved inserts, so the rows of one mailbox are not adjacent in the table.
  const ids: number[] = [];
  for (let i = 0; i < 4; i++) {
    ids.push(await insertAppPassword(tdb.db, { name: `a${i}`, mailbox: 'alice@example.org', domain: 'example.org', password: `{PLAIN}app-a${i}`, access }));
    await insertAppPassword(tdb.db, { name: `c${i}`, mailbox: 'carol@example.org', domain: 'example.org', password: `{PLAIN}app-c${i}`, access });
  }
  await tdb.db.exec('UPDATE app_passwd SET active = 0 WHERE id = ?', [ids[1]]);
  // A newer id with a smaller primary-key neighbour: rewrite ids out of insertion order.
  await tdb.db.exec('UPDATE app_passwd SET id = 1000 WHERE id = ?', [ids[0]]);

  const many = await findCredentialsMany(tdb.db, ['carol@example.org', 'ALICE@example.org', 'bob@off.example', 'nobody@example.org']);
  t.same([...many.keys()].sort(), ['alice@example.org', 'bob@off.example', 'carol@example.org']);
  const alice = many.get('alice@example.org');
  t.same(alice?.appPasswords.map((a) => a.id), [ids[2], ids[3], 1000], 'sorted by id, inactive one left out');
  t.same(alice?.appPasswords[0]?.access, access);
  t.equal(alice?.appPasswords[0]?.password, '{PLAIN}app-a2');
  t.match(many.get('bob@off.example'), { password: '{PLAIN}b', active: 2, domainActive: 0, authsource: 'keycloak', appPasswords: [] });
  t.equal(many.get('carol@example.org')?.appPasswords.length, 4);
  t.same(await findCredentials(tdb.db, 'alice@example.org'), alice, 'the single read agrees with the batched one');
  t.equal(await findCredentials(tdb.db, 'nobody@example.org'), null);
  t.same(await findCredentialsMany(tdb.db, []), new Map());
});
