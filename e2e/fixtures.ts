/// <reference lib="dom" />
/** Starts the real browser-mode server on a throwaway lab and config dir; stops all of it after. */
import { test as base } from '@playwright/test';
import type { Page } from '@playwright/test';
import { spawn } from 'node:child_process';
import { mkdtempSync, readdirSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';

export interface FerryServer {
  url: string;
  origin: string;
  labRoot: string;
  configDir: string;
}

export function pidsMentioning(text: string): number[] {
  return readdirSync('/proc').filter((d) => /^\d+$/.test(d)).map(Number).filter((pid) => {
    try {
      return readFileSync(`/proc/${pid}/cmdline`, 'utf8').includes(text);
    } catch {
      return false;
    }
  });
}

/** SIGKILL, by pid, every process whose command line mentions `text` (e.g. a lab root). */
export function killPidsMentioning(text: string): void {
  for (const pid of pidsMentioning(text)) {
    try {
      process.kill(pid, 'SIGKILL');
    } catch {
      // already gone
    }
  }
}

/** `options.labRoot`: a lab already brought up there (e.g. `lab up --libvirt`); the caller takes it down. */
export async function startServer(env: Record<string, string> = {}, options: { labRoot?: string } = {}): Promise<FerryServer & { stop(): Promise<void> }> {
  const labRoot = options.labRoot ?? mkdtempSync(path.join(tmpdir(), 'ferry-e2e-lab-'));
  const configDir = mkdtempSync(path.join(tmpdir(), 'ferry-e2e-cfg-'));
  const child = spawn(process.execPath, ['--import', 'tsx', 'electron/serve.ts'], {
    env: { ...process.env, FERRY_LAB_DIR: labRoot, XDG_CONFIG_HOME: configDir, ...env },
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  let out = '';
  const url = await new Promise<string>((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error(`server did not start: ${out}`)), 30_000);
    const onData = (c: Buffer) => {
      out += c.toString();
      const m = /Ferry console: (http:\/\/\S+)/.exec(out);
      if (m) {
        clearTimeout(timer);
        resolve(m[1]!);
      }
    };
    child.stdout.on('data', onData);
    child.stderr.on('data', onData);
    child.once('exit', (code) => reject(new Error(`server exited (${code}): ${out}`)));
  });
  return {
    url,
    origin: new URL(url).origin,
    labRoot,
    configDir,
    async stop() {
      child.kill('SIGTERM');
      await new Promise((r) => child.once('exit', r));
      // Everything the lab started dies with the server; anything left is killed by pid.
      if (!options.labRoot) {
        killPidsMentioning(labRoot);
        rmSync(labRoot, { recursive: true, force: true });
      }
      rmSync(configDir, { recursive: true, force: true });
    },
  };
}

export const test = base.extend<{ server: FerryServer }>({
  // eslint-disable-next-line no-empty-pattern -- Playwright fixtures take their dependencies as a destructured object
  server: async ({}, use) => {
    const s = await startServer();
    await use(s);
    await s.stop();
  },
});

/** The `d` of every series line, chart by chart: what the user sees drawn. */
export async function linePaths(page: Page, section: string): Promise<string[][]> {
  return page.locator(`${section} figure.chart`).evaluateAll((figs) => figs.map((f) => Array.from(f.querySelectorAll('path.series-line')).map((p) => p.getAttribute('d') ?? '')));
}

/** The phase bands behind the lines, chart by chart (phase, x, width). */
export async function phaseBands(page: Page, section: string): Promise<string[][]> {
  return page.locator(`${section} figure.chart`).evaluateAll((figs) => figs.map((f) => Array.from(f.querySelectorAll('rect.phase-band')).map((r) => `${r.getAttribute('data-phase')} ${r.getAttribute('x')} ${r.getAttribute('width')}`)));
}

export const shot = (name: string) => path.join('e2e', 'screenshots', `${name}.png`);
export { expect } from '@playwright/test';
