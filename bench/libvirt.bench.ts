/**
 * What one migration sample costs through libvirt, measured side by side in one run on the
 * libvirt lab (the demo domain idle, as LAB-NOTES advises for latency):
 *   shell        `domjobinfo UUID --rawstats` through Ferry's long-lived virsh (local relay)
 *   shell-ssh    the same through a relay over SSH (streamlocal, a real sshd on 127.0.0.1)
 *   process      a new `virsh -c URI domjobinfo ...` per sample (what Ferry does not do)
 * alternated in blocks; then the sample rate reached during a real migration sampled every
 * 20 ms (the fastest a plan allows). Last line: one JSON object.
 * Targets: shell p50 <= process p50 / 5; a migration sampled at >= 25 Hz.
 */
import path from 'node:path';
import { performance } from 'node:perf_hooks';
import { MigrationPlanSchema } from '../shared/model/migration';
import { readLabState } from '../electron/core/lab/local-lab';
import { findDomain } from '../electron/core/libvirt/libvirt-domains';
import { spawnVirsh } from '../electron/core/libvirt/virsh-shell';
import { LibvirtDriver } from '../electron/core/migration/drivers/libvirt-driver';
import { SshTransport } from '../electron/core/transport/ssh-transport';
import { makeLibvirtLab } from '../test/support/libvirt-lab';
import { runDriver } from '../test/support/driver-run';
import { makeClientHome, startSshd } from '../test/support/sshd';

const N = Number(process.env.BENCH_N ?? 400);
const BLOCK = 50;
process.stdout.on('error', () => {}); // EPIPE when piped into head: still clean up
// A promise nobody settles would let node drain and exit 0 in silence: say so instead.
process.on('beforeExit', () => {
  if (!finished) {
    console.error('libvirt bench: the event loop drained before the bench finished');
    process.exitCode = 1;
  }
});
let finished = false;

function percentiles(xs: number[]) {
  const s = [...xs].sort((a, b) => a - b);
  const at = (p: number) => s[Math.min(s.length - 1, Math.floor((p / 100) * s.length))]!;
  const r = (x: number) => Math.round(x * 1000) / 1000;
  return { n: s.length, p50: r(at(50)), p95: r(at(95)), p99: r(at(99)), max: r(s[s.length - 1]!) };
}

async function time(n: number, into: number[], fn: () => Promise<unknown>) {
  for (let i = 0; i < n; i++) {
    const t0 = performance.now();
    await fn();
    into.push(performance.now() - t0);
  }
}

function processSample(uri: string, uuid: string): Promise<void> {
  return new Promise((resolve, reject) => {
    const c = spawnVirsh(['-c', uri, 'domjobinfo', uuid, '--rawstats']);
    c.stdout.resume();
    c.stdin.end();
    c.once('close', (code) => (code === 0 ? resolve() : reject(new Error(`virsh exit ${code}`))));
  });
}

const lab = await makeLibvirtLab({ workload: { rateMiBs: 0 } });
const sshd = await startSshd();
const home = makeClientHome([sshd]);
home.trust(sshd);
const ssh = new SshTransport({ host: '127.0.0.1', port: sshd.port, user: 'root', identityFile: home.keyPath }, { homeDir: home.home, agent: false });
try {
  await ssh.connect();
  const a = readLabState(lab.root)!.libvirt!.daemons[0]!;
  const local = await lab.conn('lab-a');
  const overSsh = await lab.pool.get({ id: 'ssh-a', transport: { kind: 'ssh', ssh: { host: '127.0.0.1', port: sshd.port } }, libvirt: { socket: path.join(a.dir, 'run', 'libvirt-sock') } }, ssh);
  const uuid = (await findDomain(local, 'demo'))!.uuid;
  const cmd = ['domjobinfo', uuid, '--rawstats'];
  const warm: number[] = [];
  await time(50, warm, () => local.run(cmd));
  await time(50, warm, () => overSsh.run(cmd));
  await time(5, warm, () => processSample(local.uri, uuid));
  const shell: number[] = [];
  const shellSsh: number[] = [];
  const proc: number[] = [];
  while (shell.length < N) {
    await time(BLOCK, shell, () => local.run(cmd));
    await time(BLOCK, shellSsh, () => overSsh.run(cmd));
    await time(Math.max(1, BLOCK / 10), proc, () => processSample(local.uri, uuid));
  }
  const sp = percentiles(shell);
  const ssp = percentiles(shellSsh);
  const pp = percentiles(proc);
  console.log(`shell (local relay): p50 ${sp.p50} ms  p95 ${sp.p95} ms  p99 ${sp.p99} ms`);
  console.log(`shell over SSH:      p50 ${ssp.p50} ms  p95 ${ssp.p95} ms  p99 ${ssp.p99} ms`);
  console.log(`process per sample:  p50 ${pp.p50} ms  p95 ${pp.p95} ms  (n ${pp.n})`);

  // A real migration, sampled as fast as a plan allows.
  const hosts = { host: async (id: string) => lab.hosts.find((h) => h.id === id)!, transport: async (id: string) => lab.transports.get(id)! };
  console.log('migrating lab-a -> lab-b, sampled every 20 ms');
  const con = await lab.guest('lab-a');
  await con.command('r 20', 10_000);
  con.close();
  const driver = new LibvirtDriver(lab.pool);
  const r = await runDriver(driver, MigrationPlanSchema.parse({ vm: 'demo', from: 'lab-a', to: 'lab-b', maxBandwidth: 40e6, sampleIntervalMs: 20 }), hosts, { intervalMs: 20 });
  const t0 = Date.now();
  // 512 MiB at 40 MB/s with 20 MiB/s dirtied converges in ~20 s; a bench never hangs.
  const guard = setTimeout(() => void r.dm.control({ action: 'cancel' }, r.phase()).catch((e: unknown) => console.error(`bench libvirt: cancelling a run past 90 s failed: ${String(e)}`)), 90_000);
  const end = await r.done;
  clearTimeout(guard);
  const seconds = (Date.now() - t0) / 1000;
  const mid = percentiles(r.sampleMs);
  const rateHz = Math.round((r.samples.length / seconds) * 10) / 10;
  console.log(`migration (${end.outcome}, ${seconds.toFixed(1)} s): ${r.samples.length} samples, ${rateHz} Hz, per sample p50 ${mid.p50} ms p95 ${mid.p95} ms max ${mid.max} ms`);
  console.log(JSON.stringify({
    bench: 'libvirt',
    command: 'domjobinfo --rawstats',
    accel: lab.accel,
    shell: sp,
    shellSsh: ssp,
    process: pp,
    processOverShell: Math.round((pp.p50 / sp.p50) * 10) / 10,
    migration: { outcome: end.outcome, seconds: Math.round(seconds * 10) / 10, samples: r.samples.length, rateHz, perSample: mid },
    targets: { processOverShellMin: 5, rateHzMin: 25 },
    met: pp.p50 / sp.p50 >= 5 && rateHz >= 25,
  }));
  finished = true;
} finally {
  await ssh.close();
  await lab.close();
  await sshd.stop();
  home.cleanup();
}
