/**
 * `npm run bench -- scale`: a console with 20 hosts, 200 VMs and 8 concurrent migrations
 * sampled at 10 Hz, in a real browser. Measured:
 * - main-process CPU: the console process's own user+system time over a window, as % of one
 *   core (its child processes — ss, shells — reported apart), board open and idle, then with
 *   the 8 migrations running;
 * - its RSS (and peak);
 * - renderer frame time: requestAnimationFrame intervals in the page (p50/p95/max) and long tasks;
 * - sample to screen: from the moment Ferry took a sample (its `t`) to the first frame after
 *   the live view's lines changed with it in the page (one clock: the same machine), p50/p95.
 *
 * The hosts are local (20 runtime directories on this machine, one Ferry transport each) and
 * the VMs are the demo guest with 24 MiB of RAM. The machine has 2 shared cores, and the demo
 * guest never idles its vCPU (no hlt): 200 running guests would measure the machine, not
 * Ferry. So 192 VMs are started paused (-S: listed, monitored, costing no CPU) and the 8
 * migration sources boot, fill a 4 MiB working set, and are paused before migrating under a
 * 100 kB/s cap (each runs ~40 s at 10 Hz, as long as the window needs). `SCALE_RUNNING=1` keeps
 * the 8 sources running (dirtying 1 MiB/s), for machines with cores to spare.
 * `SCALE_CPU_PROF=DIR` writes a V8 CPU profile of the console process into DIR.
 * Last line: one JSON object. Targets: CPU <= 5 % of one core, RSS <= 200 MB, sample to screen p95 <= 150 ms.
 */
import { spawn } from 'node:child_process';
import type { ChildProcessWithoutNullStreams } from 'node:child_process';
import { mkdirSync, readdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { createInterface } from 'node:readline';
import { build } from 'vite';
import react from '@vitejs/plugin-react';
import { chromium } from 'playwright-core';
import { LocalTransport } from '../electron/core/transport/local-transport';
import { launchVm, vmFiles } from '../electron/core/hosts/vm-launcher';
import { demoVmSpec, waitGuestReady } from '../electron/core/lab/local-lab';
import { QmpClient } from '../electron/core/qmp/qmp-client';
import type { HostConfig } from '../shared/model/host';
import { processesMentioning } from '../test/support/lab';
import { killPid } from '../test/support/processes';

process.stdout.on('error', () => {});
const HOSTS = Number(process.env.SCALE_HOSTS_N ?? 20);
const VMS_PER_HOST = Number(process.env.SCALE_VMS_PER_HOST ?? 10);
const MIGRATIONS = Number(process.env.SCALE_MIGRATIONS ?? 8);
const WINDOW_MS = Number(process.env.SCALE_WINDOW_MS ?? 30_000);
const RUNNING = process.env.SCALE_RUNNING === '1';
const TICK = 100; // /proc/PID/stat counts clock ticks (USER_HZ)

const root = path.join(tmpdir(), `ferry-scale-${process.pid}`);
const configDir = path.join(root, 'config');
mkdirSync(configDir, { recursive: true });
const hostId = (i: number) => `h${String(i + 1).padStart(2, '0')}`;
/** A VM's name, unique across hosts: a migration's destination has no VM of that name already. */
const vmName = (host: string, j: number) => `${host}-v${String(j + 1).padStart(2, '0')}`;
const hosts: HostConfig[] = Array.from({ length: HOSTS }, (_, i) => ({ id: hostId(i), transport: { kind: 'local' }, runtimeDir: path.join(root, hostId(i)), migrationAddress: '127.0.0.1' }));
writeFileSync(path.join(root, 'hosts.json'), JSON.stringify(hosts));

const pct = (xs: number[], p: number) => {
  const s = [...xs].sort((a, b) => a - b);
  return s.length ? s[Math.min(s.length - 1, Math.floor((p / 100) * s.length))]! : NaN;
};
const r1 = (x: number) => Math.round(x * 10) / 10;

function procStat(pid: number): { cpuTicks: number; sysTicks: number; childTicks: number; rssKiB: number; hwmKiB: number } {
  const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
  const f = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
  const status = readFileSync(`/proc/${pid}/status`, 'utf8');
  return {
    cpuTicks: Number(f[11]) + Number(f[12]), sysTicks: Number(f[12]), childTicks: Number(f[13]) + Number(f[14]),
    rssKiB: Number(/VmRSS:\s+(\d+)/.exec(status)?.[1]), hwmKiB: Number(/VmHWM:\s+(\d+)/.exec(status)?.[1]),
  };
}

/** CPU ticks of the console's main thread (JavaScript) and of all its other threads (V8's GC and compiler, libuv's pool): where its CPU goes. */
function threadTicks(pid: number): Map<string, number> {
  const out = new Map<string, number>();
  for (const tid of readdirSync(`/proc/${pid}/task`)) {
    try {
      const stat = readFileSync(`/proc/${pid}/task/${tid}/stat`, 'utf8');
      const f = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
      const name = Number(tid) === pid ? 'main' : 'other';
      out.set(name, (out.get(name) ?? 0) + Number(f[11]) + Number(f[12]));
    } catch {
      // the thread ended between listing and reading: its time is in the process's total
    }
  }
  return out;
}

let child: ChildProcessWithoutNullStreams | undefined;
const browser = await chromium.launch({ executablePath: process.env.FERRY_CHROMIUM ?? '/usr/bin/chromium', args: ['--no-sandbox', '--disable-gpu', '--disable-background-networking', '--disable-component-update', '--disable-sync', '--no-first-run'] });
try {
  const t0 = Date.now();
  const staticDir = path.join(root, 'renderer');
  await build({ configFile: false, root: path.resolve('renderer'), base: './', plugins: [react()], logLevel: 'warn', build: { outDir: staticDir, emptyOutDir: true, chunkSizeWarningLimit: 5000 } });

  // The VMs: paused (listed and monitored, no CPU) but for the migration sources.
  const local = new LocalTransport();
  const sources = Array.from({ length: MIGRATIONS }, (_, k) => ({ from: hostId(k), to: hostId(HOSTS - 1 - k), vm: vmName(hostId(k), 0) }));
  const launches: { host: HostConfig; vm: string; source: boolean }[] = [];
  for (const h of hosts) for (let j = 0; j < VMS_PER_HOST; j++) launches.push({ host: h, vm: vmName(h.id, j), source: sources.some((s) => s.from === h.id && s.vm === vmName(h.id, j)) });
  for (let i = 0; i < launches.length; i += 4) {
    await Promise.all(launches.slice(i, i + 4).map(({ host, vm, source }) =>
      launchVm(local, host.runtimeDir!, { ...demoVmSpec({ name: vm, memoryKiB: 24_500, wsMiB: 4, rateMiBs: source && RUNNING ? 1 : 0 }), paused: !source })));
  }
  for (const s of sources) {
    const files = vmFiles(path.join(root, s.from), s.vm);
    await waitGuestReady(local, files.serialSocket);
    if (!RUNNING) {
      const q = await QmpClient.connect(await local.openUnix(files.auxQmpSocket));
      await q.execute('stop');
      q.close();
    }
  }
  console.log(`${launches.length} VMs on ${HOSTS} hosts up in ${((Date.now() - t0) / 1000).toFixed(0)} s`);

  // SCALE_CPU_PROF=DIR: a V8 CPU profile of the console process, written there when it quits.
  const prof = process.env.SCALE_CPU_PROF ? ['--cpu-prof', `--cpu-prof-dir=${path.resolve(process.env.SCALE_CPU_PROF)}`] : [];
  child = spawn(process.execPath, [...prof, '--import', 'tsx', 'bench/scale/console.ts'], { env: { ...process.env, SCALE_HOSTS: path.join(root, 'hosts.json'), SCALE_CONFIG: configDir, SCALE_STATIC: staticDir }, stdio: ['pipe', 'pipe', 'pipe'] });
  const lines = createInterface({ input: child.stdout });
  lines.on('line', (l) => {
    if (/^(FAILED|NOTE)/.test(l)) console.log(`console: ${l}`);
  });
  child.stderr.on('data', (c: Buffer) => process.stderr.write(`[console] ${c.toString()}`));
  const next = (re: RegExp) => new Promise<string>((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error(`console: no ${re} within 60 s`)), 60_000);
    lines.on('line', function on(l) {
      if (!re.test(l)) return;
      clearTimeout(timer);
      lines.off('line', on);
      resolve(l);
    });
  });
  const url = (await next(/^READY /)).slice('READY '.length);
  const pid = child.pid!;

  const page = await browser.newPage({ viewport: { width: 1400, height: 900 } });
  // tsx compiles this file with esbuild's keepNames: the functions below, run in the page, call
  // its `__name` helper, which the page lacks (without it the script threw before __bench was set).
  await page.addInitScript({ content: 'globalThis.__name = (f) => f;' });
  // Instruments the page: samples as they arrive (WebSocket), frames, long tasks, and when the live view's lines change.
  await page.addInitScript(() => {
    const w = window as unknown as Record<string, unknown>;
    const recv: { id: string; t: number; at: number }[] = [];
    const draws: number[] = [];
    const frames: number[] = [];
    const longTasks: number[] = [];
    w.__bench = { recv, draws, frames, longTasks, reset: () => { recv.length = 0; draws.length = 0; frames.length = 0; longTasks.length = 0; } };
    const Orig = window.WebSocket;
    window.WebSocket = class extends Orig {
      constructor(u: string | URL, p?: string | string[]) {
        super(u, p);
        this.addEventListener('message', (e) => {
          const at = Date.now();
          const s = String(e.data);
          if (!s.includes('"migration:sample"')) return;
          // one event, or a batch of them
          const m = JSON.parse(s) as { channel?: string; payload?: unknown; events?: { channel: string; payload: unknown }[] };
          for (const ev of m.events ?? [m]) {
            if (ev.channel !== 'migration:sample') continue;
            const p = ev.payload as { id: string; sample: { t: number } };
            recv.push({ id: p.id, t: p.sample.t, at });
          }
        });
      }
    } as typeof WebSocket;
    let last = 0;
    const frame = (ts: number) => {
      if (last) frames.push(ts - last);
      last = ts;
      requestAnimationFrame(frame);
    };
    requestAnimationFrame(frame);
    new PerformanceObserver((l) => l.getEntries().forEach((e) => longTasks.push(e.duration))).observe({ entryTypes: ['longtask'] });
    let pending = false;
    new MutationObserver((ms) => {
      if (pending || !ms.some((m) => (m.target as Element).classList?.contains('series-line'))) return;
      pending = true;
      // On screen with the next frame.
      requestAnimationFrame(() => {
        pending = false;
        draws.push(Date.now());
      });
    }).observe(document, { subtree: true, attributes: true, attributeFilter: ['d'], childList: true });
  });
  await page.goto(url);
  await page.locator('.vm-card').nth(launches.length - 1).waitFor({ timeout: 120_000 });
  console.log(`board: ${await page.locator('.vm-card').count()} VM cards on ${await page.locator('.board > section, .board > *').count()} host columns`);

  const measure = async (label: string) => {
    await page.evaluate(() => (window as unknown as { __bench: { reset(): void } }).__bench.reset());
    const a = procStat(pid);
    const ta = Date.now();
    const threadsA = threadTicks(pid);
    await new Promise((r) => setTimeout(r, WINDOW_MS));
    const b = procStat(pid);
    const wall = Date.now() - ta;
    const threads: Record<string, number> = {};
    for (const [name, ticks] of threadTicks(pid)) {
      const pctOf = r1(((ticks - (threadsA.get(name) ?? 0)) * (1000 / TICK) * 100) / wall);
      if (pctOf > 0) threads[name] = pctOf;
    }
    const page_ = await page.evaluate(() => (window as unknown as { __bench: { recv: { id: string; t: number; at: number }[]; draws: number[]; frames: number[]; longTasks: number[] } }).__bench);
    const cpuPct = ((b.cpuTicks - a.cpuTicks) * (1000 / TICK) * 100) / wall;
    const childPct = ((b.childTicks - a.childTicks) * (1000 / TICK) * 100) / wall;
    const sysPct = ((b.sysTicks - a.sysTicks) * (1000 / TICK) * 100) / wall;
    return { label, wallMs: wall, threads, cpuPctOneCore: r1(cpuPct), kernelPct: r1(sysPct), childProcessesCpuPct: r1(childPct), rssMB: r1(b.rssKiB / 1024), peakRssMB: r1(b.hwmKiB / 1024), page: page_ };
  };

  const idle = await measure('board, idle');
  console.log(`idle (board, ${launches.length} VMs): console CPU ${idle.cpuPctOneCore} % of a core (children ${idle.childProcessesCpuPct} %), RSS ${idle.rssMB} MB`);

  const ids: string[] = [];
  for (const s of sources) {
    child.stdin.write(`${JSON.stringify({ migrate: { vm: s.vm, from: s.from, to: s.to, maxBandwidth: 100_000, downtimeLimitMs: 300 } })}\n`);
    ids.push((await next(/^(STARTED|FAILED) /)).replace(/^STARTED /, ''));
  }
  if (ids.some((i) => i.startsWith('FAILED'))) throw new Error(`migrations did not start: ${ids.join('; ')}`);
  await new Promise((r) => setTimeout(r, 3000));
  const busy = await measure(`${MIGRATIONS} migrations at 10 Hz`);
  const shown = ids.at(-1)!;
  // Each sample of the migration on screen: the first frame after it arrived in which the lines changed.
  const lat: number[] = [];
  let undrawn = 0;
  const draws = busy.page.draws;
  for (const r of busy.page.recv.filter((x) => x.id === shown)) {
    const d = draws.find((x) => x >= r.at);
    if (d === undefined) undrawn++;
    else lat.push(d - r.t);
  }
  const wire = busy.page.recv.map((r) => r.at - r.t);
  const frames = busy.page.frames;
  const out = {
    bench: 'scale', hosts: HOSTS, vms: launches.length, migrations: MIGRATIONS, sampleHz: 10, sourcesRunning: RUNNING, windowMs: WINDOW_MS,
    idle: { cpuPctOneCore: idle.cpuPctOneCore, kernelPct: idle.kernelPct, threadsCpuPct: idle.threads, childProcessesCpuPct: idle.childProcessesCpuPct, rssMB: idle.rssMB },
    migrating: {
      cpuPctOneCore: busy.cpuPctOneCore, kernelPct: busy.kernelPct, threadsCpuPct: busy.threads, childProcessesCpuPct: busy.childProcessesCpuPct, rssMB: busy.rssMB, peakRssMB: busy.peakRssMB,
      samplesReceived: busy.page.recv.length,
      frameMs: { p50: r1(pct(frames, 50)), p95: r1(pct(frames, 95)), max: r1(Math.max(...frames)), longTasks: busy.page.longTasks.length, longestTaskMs: r1(Math.max(0, ...busy.page.longTasks)) },
      sampleToPageMs: { p50: r1(pct(wire, 50)), p95: r1(pct(wire, 95)) },
      sampleToScreenMs: { n: lat.length, undrawn, p50: r1(pct(lat, 50)), p95: r1(pct(lat, 95)), max: r1(Math.max(...lat)) },
    },
    targets: { cpuPctOneCoreMax: 5, rssMBMax: 200, sampleToScreenP95MsMax: 150 },
    met: false,
  };
  out.met = busy.cpuPctOneCore <= 5 && idle.cpuPctOneCore <= 5 && busy.peakRssMB <= 200 && out.migrating.sampleToScreenMs.p95 <= 150;
  console.log(`migrating: console CPU ${busy.cpuPctOneCore} % of a core (children ${busy.childProcessesCpuPct} %), RSS ${busy.rssMB} MB (peak ${busy.peakRssMB}), ${busy.page.recv.length} samples in the page, frames p95 ${out.migrating.frameMs.p95} ms, sample to screen p50 ${out.migrating.sampleToScreenMs.p50} / p95 ${out.migrating.sampleToScreenMs.p95} ms`);
  for (const id of ids) child.stdin.write(`${JSON.stringify({ cancel: id })}\n`);
  await new Promise((r) => setTimeout(r, 1500));
  console.log(JSON.stringify(out));
} finally {
  await browser.close();
  if (child && child.exitCode === null) {
    child.stdin.write(`${JSON.stringify({ quit: true })}\n`);
    await Promise.race([new Promise((r) => child!.once('exit', r)), new Promise((r) => setTimeout(r, 10_000))]);
    if (child.exitCode === null) await killPid(child.pid!);
  }
  for (const pid of processesMentioning(root)) await killPid(pid);
  rmSync(root, { recursive: true, force: true });
}
