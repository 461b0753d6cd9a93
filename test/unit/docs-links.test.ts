/**
 * The documentation holds together: every relative link in README.md and
 * docs/*.md points at a file that exists (and, with `#anchor`, at a heading
 * of that file, slugged as GitHub does), and every page in docs/ is reachable
 * from both the README and the docs index (docs/README.md).
 */
import { existsSync, readdirSync, readFileSync, statSync } from 'node:fs';
import { dirname, join, relative, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import t from 'tap';

const ROOT = resolve(dirname(fileURLToPath(import.meta.url)), '../..');
const DOCS = join(ROOT, 'docs');

/** Lines outside fenced code blocks (``` or ~~~). */
function prose(text: string): string[] {
  const out: string[] = [];
  let fence: string | null = null;
  for (const line of text.split('\n')) {
    const m = /^\s*(`{3,}|~{3,})/.exec(line);
    if (m) {
      if (fence === null) fence = (m[1] as string)[0] as string;
      else if ((m[1] as string)[0] === fence) fence = null;
      out.push('');
      continue;
    }
    out.push(fence === null ? line : '');
  }
  return out;
}

/** GitHub's heading anchors: lower case, punctuation dropped, spaces to hyphens, repeats numbered. */
export function anchors(text: string): Set<string> {
  const seen = new Map<string, number>();
  const out = new Set<string>();
  for (const line of prose(text)) {
    const m = /^#{1,6}\s+(.*?)\s*#*\s*$/.exec(line);
    if (!m) continue;
    const slug = (m[1] as string)
      .replace(/<[^>]+>/g, '')
      .replace(/\[([^\]]*)\]\([^)]*\)/g, '$1')
      .toLowerCase()
      .replace(/[^\p{L}\p{N}\s_-]/gu, '')
      .replace(/\s/g, '-');
    const n = seen.get(slug) ?? 0;
    seen.set(slug, n + 1);
    out.add(n === 0 ? slug : `${slug}-${n}`);
  }
  return out;
}

/** Markdown links `[text](target)` and `[text]: target` outside code (inline code spans removed). */
export function links(text: string): string[] {
  const out: string[] = [];
  for (const raw of prose(text)) {
    const line = raw.replace(/`[^`]*`/g, '');
    for (const m of line.matchAll(/\]\(\s*<?([^)\s>]+)>?(?:\s+"[^"]*")?\s*\)/g)) out.push(m[1] as string);
    const ref = /^\s*\[[^\]]+\]:\s+(\S+)/.exec(line);
    if (ref) out.push(ref[1] as string);
  }
  return out;
}

const pages = readdirSync(DOCS)
  .filter((f) => f.endsWith('.md'))
  .map((f) => join(DOCS, f));
const files = [join(ROOT, 'README.md'), ...pages];

t.test('the link and anchor parsers', async (t) => {
  t.same([...anchors('# A `b` c\n## Dovecot 2.4 (tested)\n```\n# not a heading\n```\n## A b c\n## Sizing `auth_worker_max_count`\n')], ['a-b-c', 'dovecot-24-tested', 'a-b-c-1', 'sizing-auth_worker_max_count']);
  t.same(links('see [x](docs/a.md#b) and [y](https://e.org) `[z](nope.md)`\n```\n[w](in-code.md)\n```\n[ref]: other.md\n'), ['docs/a.md#b', 'https://e.org', 'other.md']);
});

for (const file of files) {
  t.test(`links in ${relative(ROOT, file)} resolve`, async (t) => {
    const text = readFileSync(file, 'utf8');
    const own = anchors(text);
    let n = 0;
    for (const target of links(text)) {
      if (/^[a-z][a-z0-9+.-]*:/i.test(target)) continue; // http:, https:, mailto:
      n += 1;
      const [path, anchor] = target.split('#', 2) as [string, string | undefined];
      const dest = path === '' ? file : resolve(dirname(file), decodeURIComponent(path));
      if (!existsSync(dest)) {
        t.fail(`${target}: ${relative(ROOT, dest)} does not exist`);
        continue;
      }
      if (anchor && dest.endsWith('.md') && statSync(dest).isFile()) {
        const set = dest === file ? own : anchors(readFileSync(dest, 'utf8'));
        t.ok(set.has(anchor), `${target}: #${anchor} is a heading of ${relative(ROOT, dest)}`);
      } else {
        t.pass(`${target} exists`);
      }
    }
    if (n === 0) t.pass('no relative links');
  });
}

t.test('every page in docs/ is linked from README.md and from docs/README.md', async (t) => {
  const readme = links(readFileSync(join(ROOT, 'README.md'), 'utf8')).map((l) => resolve(ROOT, l.split('#')[0] as string));
  const index = join(DOCS, 'README.md');
  t.ok(existsSync(index), 'docs/README.md (the index) exists');
  const fromIndex = existsSync(index) ? links(readFileSync(index, 'utf8')).map((l) => resolve(DOCS, l.split('#')[0] as string)) : [];
  t.ok(readme.includes(index), 'README.md links the docs index');
  for (const page of pages.filter((p) => p !== index)) {
    t.ok(readme.includes(page), `README.md links ${relative(ROOT, page)}`);
    t.ok(fromIndex.includes(page), `docs/README.md links ${relative(ROOT, page)}`);
  }
});

t.test('no paragraph appears twice across README.md and docs/', async (t) => {
  const seen = new Map<string, string>();
  for (const file of files) {
    for (const para of prose(readFileSync(file, 'utf8')).join('\n').split(/\n\s*\n/)) {
      const p = para.split(/\s+/).join(' ').trim();
      if (p.length < 120 || p.startsWith('|')) continue;
      const first = seen.get(p);
      t.notOk(first, `${relative(ROOT, file)}: "${p.slice(0, 60)}…"${first ? ` is also in ${first}` : ''}`);
      if (!first) seen.set(p, relative(ROOT, file));
    }
  }
});

t.test('the README puts the two commands first and has no placeholder', async (t) => {
  const readme = readFileSync(join(ROOT, 'README.md'), 'utf8');
  const head = readme.split('\n').slice(0, 40).join('\n');
  t.match(head, 'npm ci && npm run demo', 'the demo command in the first 40 lines');
  t.match(head, 'npm ci && npm test', 'the test command in the first 40 lines');
  for (const file of files) t.notMatch(readFileSync(file, 'utf8'), /PLACEHOLDER|\bTODO\b|\bTBD\b/, `${relative(ROOT, file)}: no placeholder`);
});
