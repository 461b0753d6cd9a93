/** Human output: aligned tables and key/value blocks. JSON output is the caller's JSON.stringify. */

export function table(headers: readonly string[], rows: readonly (readonly unknown[])[]): string {
  const cells = rows.map((r) => r.map((c) => (c === null || c === undefined ? '' : String(c))));
  const widths = headers.map((h, i) => Math.max(h.length, ...cells.map((r) => (r[i] ?? '').length)));
  const line = (r: readonly string[]): string => r.map((c, i) => c.padEnd(widths[i] ?? 0)).join('  ').trimEnd();
  return [line(headers.map((h) => h.toUpperCase())), ...cells.map(line)].join('\n') + '\n';
}

export function keyValues(entries: readonly (readonly [string, unknown])[]): string {
  const width = Math.max(0, ...entries.map(([k]) => k.length));
  return entries.map(([k, v]) => `${(k + ':').padEnd(width + 1)} ${v === null || v === undefined ? '' : typeof v === 'object' ? JSON.stringify(v) : String(v)}`).join('\n') + '\n';
}

/** One checklist line: ✓/✗/! with an indented cause and fix. */
export function checkLine(status: 'pass' | 'fail' | 'warn' | 'skip', title: string, detail?: string, fix?: string): string {
  const mark = { pass: '✓', fail: '✗', warn: '!', skip: '-' }[status];
  let s = `${mark} ${title}\n`;
  if (detail) s += `    ${detail}\n`;
  if (fix) s += `    fix: ${fix}\n`;
  return s;
}
