/**
 * Docs that cannot rot: every Dovecot or Postfix configuration block in docs/
 * is tagged `<!-- tested: ID -->` (test/helpers/doc-blocks.ts), and every tag is
 * read by a test that runs it. A new untagged block, or a tag no test reads,
 * fails here.
 */
import { readFileSync, readdirSync, statSync } from 'node:fs';
import { join } from 'node:path';
import t from 'tap';
import { docBlocks, fencedBlocks } from '../helpers/doc-blocks.js';
import { REPO_ROOT } from '../helpers/dovecot.js';

/** Lines that only a Dovecot or Postfix configuration has. */
const CONFIG_LINE =
  /^\s*(passdb|userdb)\b.*\{\s*$|^\s*service\s+[a-z-]+\s*\{|^\s*(auth_[a-z_]+|smtpd_[a-z_]+|mail_location|mail_driver|protocols|import_environment|lua_file|dovecot_config_version)\s*=/m;

function testSources(dir: string): string[] {
  const out: string[] = [];
  for (const entry of readdirSync(dir)) {
    const path = join(dir, entry);
    if (statSync(path).isDirectory()) out.push(...testSources(path));
    else if (entry.endsWith('.ts')) out.push(readFileSync(path, 'utf8'));
  }
  return out;
}

t.test('every Dovecot/Postfix configuration block in docs/ is tagged', async (t) => {
  const untagged = fencedBlocks().filter((b) => b.id === null && !/^(sh|console|text|ini|promql|cron|json|yaml|ts|js|lua)$/.test(b.info) && CONFIG_LINE.test(b.text));
  t.same(
    untagged.map((b) => `${b.file}:${b.line}`),
    [],
    'tag each with <!-- tested: ID --> on the line before the fence, and run it in a test (docBlock(ID) / startDovecot({ docs: [ID] }))',
  );
});

t.test('every tag is read by a test', async (t) => {
  const blocks = docBlocks();
  t.ok(blocks.size >= 6, 'the Dovecot 2.3/2.4, Postfix and Lua settings blocks are tagged');
  // Tests name ids literally or as `dovecot-${version}-…` templates.
  const sources = testSources(join(REPO_ROOT, 'test'))
    .join('\n')
    .replaceAll('${version}', '2.3')
    .concat('\n', testSources(join(REPO_ROOT, 'test')).join('\n').replaceAll('${version}', '2.4'));
  for (const [id, b] of blocks) {
    t.ok(sources.includes(`'${id}'`) || sources.includes(`\`${id}\``) || sources.includes(`"${id}"`), `${id} (${b.file}:${b.line}) is used by a test`);
  }
});

t.test('the extractor', async (t) => {
  const blocks = docBlocks();
  const b23 = blocks.get('dovecot-2.3-auth');
  t.match(b23?.text, /passdb \{\n  driver = lua\n/, 'returns the block text without the fences');
  t.notMatch(b23?.text, /```/);
  t.match(blocks.get('dovecot-2.4-auth')?.text, /service auth-worker \{\n  process_limit = 30\n\}/, '2.4 has the worker limit in its 2.4 form');
  t.notMatch(blocks.get('dovecot-2.4-auth')?.text, /^\s*auth_worker_max_count\s*=/m, 'and not the 2.3 setting 2.4 refuses');
});
