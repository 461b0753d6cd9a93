/**
 * Configuration blocks in docs/*.md that the tests run verbatim, so the docs
 * cannot drift from what works. A block is tagged by an HTML comment (invisible
 * when rendered) on the line right before its opening fence:
 *
 *   <!-- tested: dovecot-2.3-auth -->
 *   ```
 *   passdb { ... }
 *   ```
 *
 * `docBlock(id)` returns the block's text; `docBlocks()` every tagged block.
 * test/unit/docs-config-blocks.test.ts fails when a Dovecot or Postfix
 * configuration block in docs/ has no tag, or a tag is not used by any test.
 */
import { readFileSync, readdirSync } from 'node:fs';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';

export const DOCS_DIR = join(resolve(dirname(fileURLToPath(import.meta.url)), '../..'), 'docs');
const TAG = /^<!--\s*tested:\s*([A-Za-z0-9._-]+)\s*-->\s*$/;

export interface FencedBlock {
  file: string;
  /** 1-based line of the opening fence. */
  line: number;
  info: string;
  text: string;
  /** The id of the tag right before it, or null. */
  id: string | null;
}

/** Every fenced block in docs/*.md (top level or indented in a list), with its tag if any. */
export function fencedBlocks(dir = DOCS_DIR): FencedBlock[] {
  const out: FencedBlock[] = [];
  for (const name of readdirSync(dir).filter((f) => f.endsWith('.md')).sort()) {
    const lines = readFileSync(join(dir, name), 'utf8').split('\n');
    for (let i = 0; i < lines.length; i++) {
      const open = /^(\s*)(```+|~~~+)\s*(.*)$/.exec(lines[i] ?? '');
      if (!open) continue;
      const [, indent = '', fence = '```', info = ''] = open;
      const body: string[] = [];
      let j = i + 1;
      for (; j < lines.length; j++) {
        const l = lines[j] ?? '';
        if (l.trim().startsWith(fence) && l.trim().replace(/[`~]/g, '') === '') break;
        body.push(l.startsWith(indent) ? l.slice(indent.length) : l.trimStart());
      }
      const tag = TAG.exec((lines[i - 1] ?? '').trim());
      out.push({ file: `docs/${name}`, line: i + 1, info: info.trim(), text: body.join('\n') + '\n', id: tag?.[1] ?? null });
      i = j;
    }
  }
  return out;
}

/** Tagged blocks by id (an id used twice is an error). */
export function docBlocks(dir = DOCS_DIR): Map<string, FencedBlock> {
  const map = new Map<string, FencedBlock>();
  for (const b of fencedBlocks(dir)) {
    if (b.id === null) continue;
    const seen = map.get(b.id);
    if (seen) throw new Error(`docs block id ${b.id} is used twice: ${seen.file}:${seen.line} and ${b.file}:${b.line}`);
    map.set(b.id, b);
  }
  return map;
}

/** The text of the docs block tagged `id`; throws naming the id when it is missing. */
export function docBlock(id: string): string {
  const b = docBlocks().get(id);
  if (!b) throw new Error(`no block tagged <!-- tested: ${id} --> in docs/`);
  return b.text;
}
