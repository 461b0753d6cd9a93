/**
 * The systemd units: `systemd-analyze verify` finds nothing to complain about
 * (it prints warnings but still exits 0 for unknown keys and bad values, so the
 * output must be empty), and `systemd-analyze security --offline` scores each
 * service at most at docs/production.md's figure. verify runs against a throw-away root
 * holding systemd's own units and stub executables, so it needs neither a
 * running systemd nor an installed mailauth.
 */
import { execFile, spawnSync } from 'node:child_process';
import { chmodSync, cpSync, mkdirSync, mkdtempSync, readdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import t from 'tap';
import { requireTool } from '../helpers/require-tool.js';

const ROOT = resolve(dirname(fileURLToPath(import.meta.url)), '../..');
const UNIT_DIR = join(ROOT, 'systemd');
const UNITS = readdirSync(UNIT_DIR).filter((f) => /\.(service|timer)$/.test(f)).sort();
const SYSTEM_UNITS = '/usr/lib/systemd/system';

function missing(): string | null {
  if (spawnSync('sh', ['-c', 'command -v systemd-analyze']).status !== 0) return 'systemd-analyze not found (apt-get install systemd)';
  try {
    readdirSync(SYSTEM_UNITS);
  } catch {
    return `${SYSTEM_UNITS} not found (apt-get install systemd)`;
  }
  return null;
}

function run(args: string[]): Promise<{ code: number; out: string }> {
  return new Promise((r) => {
    execFile('systemd-analyze', args, { timeout: 60_000 }, (err, stdout, stderr) => {
      const code = err ? (typeof (err as { code?: unknown }).code === 'number' ? (err as { code: number }).code : 1) : 0;
      r({ code, out: (stdout + stderr).trim() });
    });
  });
}

if (requireTool(t, 'systemd unit check (systemd-analyze)', missing())) {
  t.test('the units ship: two services and the timer', async (t) => {
    t.same(UNITS, ['mailauth-sync.service', 'mailauth-sync.timer', 'mailauth.service']);
  });

  t.test('systemd-analyze verify: no complaint about any unit', async (t) => {
    const root = mkdtempSync(join(tmpdir(), 'mailauth-units-'));
    t.teardown(() => rmSync(root, { recursive: true, force: true }));
    cpSync(SYSTEM_UNITS, join(root, SYSTEM_UNITS), { recursive: true });
    // verify checks that each Exec*= command exists and is executable inside the root.
    mkdirSync(join(root, 'usr/bin'), { recursive: true });
    for (const exe of ['mailauth', 'kill']) {
      writeFileSync(join(root, 'usr/bin', exe), '#!/bin/sh\n');
      chmodSync(join(root, 'usr/bin', exe), 0o755);
    }
    const etc = join(root, 'etc/systemd/system');
    mkdirSync(etc, { recursive: true });
    for (const u of UNITS) cpSync(join(UNIT_DIR, u), join(etc, u));
    for (const u of UNITS) {
      const r = await run(['verify', `--root=${root}`, join(etc, u)]);
      t.same(r, { code: 0, out: '' }, `${u}: verify exits 0 and prints nothing`);
    }

    // The check is real: a broken copy is reported.
    writeFileSync(join(etc, 'broken.service'), readFileSync(join(UNIT_DIR, 'mailauth.service'), 'utf8').replace('ProtectSystem=strict', 'ProtectSystem=very'));
    const broken = await run(['verify', `--root=${root}`, join(etc, 'broken.service')]);
    t.match(broken.out, /ProtectSystem|protect system/i, 'a bad value in a copy of mailauth.service is reported');
  });

  t.test('systemd-analyze security: each service scores at most what docs/production.md says', async (t) => {
    const readme = readFileSync(join(ROOT, 'docs/production.md'), 'utf8');
    const claimed = /overall exposure level (\d+\.\d)/i.exec(readme);
    t.ok(claimed, 'docs/production.md states the exposure score');
    const limit = Number(claimed?.[1] ?? 0);
    for (const u of UNITS.filter((x) => x.endsWith('.service'))) {
      const r = await run(['security', '--offline=true', join(UNIT_DIR, u)]);
      const m = /Overall exposure level for \S+: (\d+\.\d)/.exec(r.out);
      t.ok(m, `${u}: scored`);
      const score = Number(m?.[1]);
      t.ok(score <= limit, `${u}: exposure ${score} ≤ ${limit} (docs/production.md)`);
      t.match(r.out, /✗ MemoryDenyWriteExecute=/, `${u}: W^X stays off on purpose (V8's JIT)`);
    }
  });
}
