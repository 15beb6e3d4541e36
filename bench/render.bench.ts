/**
 * `npm run bench -- render`: in Debian's Chromium, a one-hour timeline (36,000 samples,
 * 6 series) drawn with the console's chart component against the same data handed to
 * recharts raw: first draw and p95 of live updates. Last line: one JSON object.
 * Targets: first draw <= 250 ms, update p95 <= 8 ms, >= 20x faster than raw.
 */
import { createServer } from 'node:http';
import { readFile } from 'node:fs/promises';
import path from 'node:path';
import { build } from 'vite';
import react from '@vitejs/plugin-react';
import { chromium } from 'playwright-core';

process.stdout.on('error', () => {});
const out = path.resolve('.tmp/render-bench');
await build({ root: 'bench/render', base: './', plugins: [react()], logLevel: 'warn', build: { outDir: out, emptyOutDir: true } });
const server = createServer(async (req, res) => {
  const file = path.join(out, decodeURIComponent(new URL(req.url ?? '/', 'http://x').pathname).replace(/^\/$/, '/index.html'));
  try {
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
const r2 = (x: number) => Math.round(x * 100) / 100;
try {
  const page = await browser.newPage({ viewport: { width: 1300, height: 400 } });
  await page.goto(`http://127.0.0.1:${port}/?pts=${process.env.PTS ?? 1200}`);
  await page.waitForFunction(() => (globalThis as unknown as { benchReady?: boolean }).benchReady === true);
  const run = (mode: string, updates: number) => page.evaluate(([m, u]) => (globalThis as unknown as { runBench: (m: string, u: number) => Promise<{ firstMs: number; updatesMs: number[] }> }).runBench(m as string, u as number), [mode, updates] as const);
  await run('ferry', 5); // warm up
  const ferry = await run('ferry', 60);
  const raw = await run('raw', 8);
  const f = { firstMs: r2(ferry.firstMs), updateP95Ms: r2(p95(ferry.updatesMs)) };
  const w = { firstMs: r2(raw.firstMs), updateP95Ms: r2(p95(raw.updatesMs)) };
  console.log(`Ferry chart: first draw ${f.firstMs} ms, update p95 ${f.updateP95Ms} ms`);
  console.log(`raw recharts: first draw ${w.firstMs} ms, update p95 ${w.updateP95Ms} ms`);
  console.log(JSON.stringify({
    bench: 'render', samples: 36_000, series: 6, ferry: f, raw: w,
    firstDrawRatio: r2(w.firstMs / f.firstMs), updateRatio: r2(w.updateP95Ms / f.updateP95Ms),
    targets: { firstMsMax: 250, updateP95MsMax: 8, ratioMin: 20 },
    met: f.firstMs <= 250 && f.updateP95Ms <= 8 && w.updateP95Ms / f.updateP95Ms >= 20,
  }));
} finally {
  await browser.close();
  server.close();
}
