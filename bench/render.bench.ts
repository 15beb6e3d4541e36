/**
 * `npm run bench -- render`: in Debian's Chromium, a one-hour timeline (36,000 samples,
 * 6 series): the console's chart component and the whole live path (store + live view's
 * charts) against the same data handed to recharts raw: first draw and p95 of live updates.
 * Rounds are interleaved so that the shared machine's load hits every variant alike.
 * `BENCH_BEFORE=<git ref>` also builds this bench page against that commit's code and runs
 * it in the same rounds, side by side (before/after in one run). Last line: one JSON object.
 * Targets: first draw <= 250 ms, update p95 <= 8 ms (chart and console), first draw >= 20x faster than raw.
 */
import { createServer } from 'node:http';
import { execFileSync } from 'node:child_process';
import { cpSync, existsSync, mkdirSync, rmSync, symlinkSync } from 'node:fs';
import { readFile } from 'node:fs/promises';
import path from 'node:path';
import { build } from 'vite';
import react from '@vitejs/plugin-react';
import { chromium } from 'playwright-core';

process.stdout.on('error', () => {});
const ROUNDS = Number(process.env.ROUNDS ?? 3);
const tmp = path.resolve('.tmp/render-bench');
rmSync(tmp, { recursive: true, force: true });

/** Builds the bench page of the work tree (`now`) or of a commit (exported into .tmp). */
async function buildPage(label: string, ref?: string): Promise<string> {
  let root = path.resolve('bench/render');
  if (ref) {
    const src = path.join(tmp, `src-${label}`);
    mkdirSync(src, { recursive: true });
    execFileSync('sh', ['-c', `git archive "$1" | tar -x -C "$2"`, 'sh', ref, src]);
    // That commit's code under this page: the same harness measures both.
    rmSync(path.join(src, 'bench/render'), { recursive: true, force: true });
    cpSync(path.resolve('bench/render'), path.join(src, 'bench/render'), { recursive: true });
    if (!existsSync(path.join(src, 'node_modules'))) symlinkSync(path.resolve('node_modules'), path.join(src, 'node_modules'));
    root = path.join(src, 'bench/render');
  }
  const outDir = path.join(tmp, label);
  await build({ root, base: './', plugins: [react()], logLevel: 'warn', build: { outDir, emptyOutDir: true } });
  return outDir;
}

const before = process.env.BENCH_BEFORE;
const pages: Record<string, string> = { now: await buildPage('now') };
if (before) pages.before = await buildPage('before', before);

const server = createServer(async (req, res) => {
  const [, label = '', ...rest] = decodeURIComponent(new URL(req.url ?? '/', 'http://x').pathname).split('/');
  const dir = pages[label];
  const file = dir ? path.join(dir, rest.join('/') || 'index.html') : '';
  try {
    if (!dir || !file.startsWith(dir)) throw new Error('no such page');
    const body = await readFile(file);
    res.writeHead(200, { 'content-type': file.endsWith('.js') ? 'text/javascript' : 'text/html' });
    res.end(body);
  } catch {
    res.writeHead(404);
    res.end();
  }
});
await new Promise<void>((r) => server.listen(0, '127.0.0.1', () => r()));
const port = (server.address() as { port: number }).port;
const browser = await chromium.launch({ executablePath: process.env.FERRY_CHROMIUM ?? '/usr/bin/chromium', args: ['--no-sandbox', '--disable-gpu', '--disable-background-networking', '--disable-component-update', '--disable-sync', '--no-first-run'] });
const p95 = (xs: number[]) => [...xs].sort((a, b) => a - b)[Math.floor(0.95 * (xs.length - 1))]!;
const median = (xs: number[]) => [...xs].sort((a, b) => a - b)[Math.floor((xs.length - 1) / 2)]!;
const r2 = (x: number) => Math.round(x * 100) / 100;
type Run = { firstMs: number; updatesMs: number[] };
try {
  const page = await browser.newPage({ viewport: { width: 1300, height: 800 } });
  const open = async (label: string) => {
    await page.goto(`http://127.0.0.1:${port}/${label}/?pts=${process.env.PTS ?? 1200}`);
    await page.waitForFunction(() => (globalThis as unknown as { benchReady?: boolean }).benchReady === true);
  };
  const run = (mode: string, updates: number) => page.evaluate(([m, u]) => (globalThis as unknown as { runBench: (m: string, u: number) => Promise<Run> }).runBench(m as string, u as number), [mode, updates] as const);
  const results: Record<string, Record<string, Run[]>> = {};
  const keep = (label: string, mode: string, r: Run) => ((results[label] ??= {})[mode] ??= []).push(r);
  for (let round = 0; round < ROUNDS; round++) {
    for (const label of Object.keys(pages)) {
      await open(label);
      for (const mode of ['chart', 'console']) {
        await run(mode, 5); // warm up
        keep(label, mode, await run(mode, 60));
      }
      // recharts itself is the same in every variant: measured once a round.
      if (label === 'now') keep('raw', 'raw', await run('raw', 8));
    }
  }
  // Per variant and mode: the median over rounds of each round's first draw and update p95, and their spread.
  const figures = (runs: Run[]) => {
    const firsts = runs.map((r) => r.firstMs);
    const p95s = runs.map((r) => p95(r.updatesMs));
    return { firstMs: r2(median(firsts)), updateP95Ms: r2(median(p95s)), rounds: runs.map((r, i) => ({ firstMs: r2(firsts[i]!), updateP95Ms: r2(p95s[i]!) })) };
  };
  const raw = figures(results.raw!.raw!);
  const out: Record<string, unknown> = { bench: 'render', samples: 36_000, series: 6, rounds: ROUNDS, raw };
  for (const label of Object.keys(pages)) {
    const chart = figures(results[label]!.chart!);
    const live = figures(results[label]!.console!);
    const row = { chart, console: live, firstDrawRatio: r2(raw.firstMs / chart.firstMs), updateRatio: r2(raw.updateP95Ms / chart.updateP95Ms) };
    out[label] = row;
    const spread = (f: ReturnType<typeof figures>, k: 'firstMs' | 'updateP95Ms') => f.rounds.map((x) => x[k]).join('/');
    console.log(`${label.padEnd(6)} chart:   first draw ${chart.firstMs} ms (${spread(chart, 'firstMs')}), update p95 ${chart.updateP95Ms} ms (${spread(chart, 'updateP95Ms')}); ${row.firstDrawRatio}x faster first draw than raw`);
    console.log(`${label.padEnd(6)} console: first draw ${live.firstMs} ms (${spread(live, 'firstMs')}), update p95 ${live.updateP95Ms} ms (${spread(live, 'updateP95Ms')})`);
  }
  console.log(`raw recharts:   first draw ${raw.firstMs} ms (${raw.rounds.map((x) => x.firstMs).join('/')}), update p95 ${raw.updateP95Ms} ms`);
  const now = out.now as { chart: { firstMs: number; updateP95Ms: number }; console: { updateP95Ms: number }; firstDrawRatio: number };
  out.targets = { firstMsMax: 250, updateP95MsMax: 8, firstDrawRatioMin: 20 };
  out.met = now.chart.firstMs <= 250 && now.chart.updateP95Ms <= 8 && now.console.updateP95Ms <= 8 && now.firstDrawRatio >= 20;
  console.log(JSON.stringify(out));
} finally {
  await browser.close();
  server.close();
}
