/**
 * Real headless Chromium for the portal tests (issue 19): Debian's
 * /usr/bin/chromium driven by playwright-core (no browser is ever downloaded),
 * a fresh profile per launch, screenshots under test-artifacts/, and axe-core
 * evaluated in the page (Runtime.evaluate, so the page's CSP — which forbids
 * inline script — stays on while axe runs).
 */
import { existsSync, mkdirSync, mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { createRequire } from 'node:module';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { BrowserContext, Page } from 'playwright-core';
import { REPO_ROOT } from './dovecot.js';
import { requireTool } from './require-tool.js';
import type { TapLike } from './require-tool.js';

export const CHROMIUM = process.env.MAILAUTH_TEST_CHROMIUM ?? '/usr/bin/chromium';
export const ARTIFACTS = join(REPO_ROOT, 'test-artifacts');

export function chromiumMissing(): string | null {
  if (!existsSync(CHROMIUM)) return `${CHROMIUM} not found (apt-get install chromium)`;
  return null;
}

/** Gate a browser test file: in CI (CI=true) a missing Chromium is a failure, elsewhere a loud skip. */
export function requireChromium(t: TapLike): boolean {
  return requireTool(t, 'browser (Chromium)', chromiumMissing());
}

export const CHROMIUM_ARGS = [
  '--headless',
  '--no-sandbox',
  '--disable-gpu',
  '--disable-quic',
  '--no-first-run',
  '--disable-background-networking',
  '--disable-component-update',
  '--disable-sync',
];

/** A fresh browser profile (its own --user-data-dir), closed and removed in teardown. */
export async function launchBrowser(t: { teardown(fn: () => unknown): void }, opts: { viewport?: { width: number; height: number } } = {}): Promise<BrowserContext> {
  const { chromium } = await import('playwright-core');
  const profile = mkdtempSync(join(tmpdir(), 'mailauth-chromium-'));
  const context = await chromium.launchPersistentContext(profile, {
    executablePath: CHROMIUM,
    headless: true,
    args: CHROMIUM_ARGS,
    viewport: opts.viewport ?? { width: 1024, height: 800 },
    timeout: 30_000,
  });
  context.setDefaultTimeout(15_000);
  t.teardown(async () => {
    await context.close().catch(() => undefined);
    rmSync(profile, { recursive: true, force: true });
  });
  return context;
}

/** Saves a full-page PNG as test-artifacts/<group>/<name>.png and returns its path. */
export async function screenshot(page: Page, group: string, name: string): Promise<string> {
  const dir = join(ARTIFACTS, group);
  mkdirSync(dir, { recursive: true });
  const path = join(dir, `${name}.png`);
  await page.screenshot({ path, fullPage: true });
  return path;
}

let axeSource: string | null = null;

export interface AxeViolation {
  id: string;
  impact: string | null;
  help: string;
  nodes: number;
}

/** axe-core's violations on the current page (all impacts; callers filter). */
export async function axeViolations(page: Page): Promise<AxeViolation[]> {
  axeSource ??= readFileSync(createRequire(import.meta.url).resolve('axe-core/axe.min.js'), 'utf8');
  await page.evaluate(axeSource);
  return page.evaluate(async () => {
    const axe = (globalThis as unknown as { axe: { run(ctx: unknown, opts: unknown): Promise<{ violations: { id: string; impact: string | null; help: string; nodes: unknown[] }[] }> } }).axe;
    const r = await axe.run((globalThis as unknown as { document: unknown }).document, { resultTypes: ['violations'] });
    return r.violations.map((v) => ({ id: v.id, impact: v.impact, help: v.help, nodes: v.nodes.length }));
  });
}

/** Only what the issue forbids: serious and critical violations. */
export function seriousViolations(v: readonly AxeViolation[]): AxeViolation[] {
  return v.filter((x) => x.impact === 'serious' || x.impact === 'critical');
}

export function removeArtifacts(group: string): void {
  rmSync(join(ARTIFACTS, group), { recursive: true, force: true });
}
