/**
 * `mailauth serve` in a child process of its own, so a test or bench can read
 * its CPU time (/proc), the bytes it logs (stdout, counted and kept) and the TCP
 * connections it opens (test/helpers/count-connects.mjs over IPC), and stop it.
 * From the TypeScript sources by default; `root` + `dist: true` runs another
 * tree's bin/mailauth (the bench's "before" build).
 */
import { spawn } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import YAML from 'yaml';
import { freePort } from './free-port.js';

const HERE = dirname(fileURLToPath(import.meta.url));
export const REPO = resolve(HERE, '../..');

interface Teardown {
  teardown(fn: () => unknown): void;
}

export interface DaemonProcess {
  url: string;
  pid: number;
  /** user+system CPU seconds so far. */
  cpuSeconds(): number;
  /** Bytes written to stdout+stderr (the log) so far. */
  logBytes(): number;
  /** The log lines so far, parsed (non-JSON lines as { raw }). */
  lines(): Record<string, unknown>[];
  /** TCP client sockets the daemon has opened so far. */
  connects(): Promise<number>;
  stop(): Promise<void>;
}

export interface DaemonProcessOptions {
  /** YAML tree of the config (listen is filled in). */
  config: Record<string, unknown>;
  /** Another tree to run (its bin/mailauth and dist/); default: this repository's sources. */
  root?: string;
  dist?: boolean;
}

export function cpuSecondsOf(pid: number): number {
  const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
  const f = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
  return (Number(f[11]) + Number(f[12])) / 100;
}

export async function startDaemonProcess(t: Teardown, o: DaemonProcessOptions): Promise<DaemonProcess> {
  const dir = mkdtempSync(join(tmpdir(), 'mailauth-dp-'));
  const port = await freePort();
  const configFile = join(dir, 'config.yaml');
  writeFileSync(configFile, YAML.stringify({ ...o.config, listen: { address: `127.0.0.1:${port}` } }));
  const counter = join(HERE, 'count-connects.mjs');
  const root = o.root ?? REPO;
  const args = o.dist
    ? ['--import', counter, join(root, 'bin/mailauth'), '--config', configFile, 'serve']
    : ['--import', join(REPO, 'bench/register.mjs'), '--import', counter, join(HERE, 'cli-main.ts'), '--config', configFile, 'serve'];
  const child = spawn(process.execPath, args, { stdio: ['ignore', 'pipe', 'pipe', 'ipc'], env: { ...process.env, MAILAUTH_CONFIG: '' } });
  let bytes = 0;
  let text = '';
  const onData = (d: Buffer): void => {
    bytes += d.length;
    if (text.length < 64 * 1024 * 1024) text += d.toString();
  };
  child.stdout?.on('data', onData);
  child.stderr?.on('data', onData);
  const pending: ((n: number) => void)[] = [];
  child.on('message', (m: { type?: string; total?: number }) => {
    if (m?.type === 'connects') pending.shift()?.(m.total ?? 0);
  });
  let stopped = false;
  const stop = async (): Promise<void> => {
    if (stopped) return;
    stopped = true;
    if (child.exitCode === null && child.signalCode === null) {
      await new Promise<void>((done) => {
        child.once('exit', () => done());
        child.kill('SIGTERM');
        setTimeout(() => child.kill('SIGKILL'), 10_000).unref();
      });
    }
    rmSync(dir, { recursive: true, force: true });
  };
  t.teardown(stop);
  const url = `http://127.0.0.1:${port}`;
  const until = Date.now() + 60_000;
  for (;;) {
    if (child.exitCode !== null) throw new Error(`daemon exited (${child.exitCode}): ${text.slice(-3000)}`);
    try {
      const res = await fetch(`${url}/healthz`);
      await res.arrayBuffer();
      if (res.ok) break;
    } catch {
      /* not yet */
    }
    if (Date.now() > until) throw new Error(`daemon not up at ${url}: ${text.slice(-3000)}`);
    await new Promise((r) => setTimeout(r, 100));
  }
  const pid = child.pid ?? 0;
  return {
    url,
    pid,
    cpuSeconds: () => cpuSecondsOf(pid),
    logBytes: () => bytes,
    lines: () =>
      text
        .split('\n')
        .filter(Boolean)
        .map((l) => {
          try {
            return JSON.parse(l) as Record<string, unknown>;
          } catch {
            return { raw: l };
          }
        }),
    connects: () =>
      new Promise<number>((done, fail) => {
        pending.push(done);
        if (!child.send({ type: 'connects' })) fail(new Error('IPC closed'));
      }),
    stop,
  };
}
