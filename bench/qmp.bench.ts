/**
 * QMP round-trip latency: 2000 sequential `query-migrate` directly over the unix socket and
 * 2000 through the SSH tunnel (streamlocal), alternated in blocks within one run so both
 * paths see the same machine load. The guest is paused (-S) as LAB-NOTES advises.
 * Last line: one JSON object. Targets: p50 ratio <= 1.3, tunnel p99 <= 2 ms on loopback.
 */
import path from 'node:path';
import { tmpdir } from 'node:os';
import { rmSync } from 'node:fs';
import { QmpClient } from '../electron/core/qmp/qmp-client';
import { LocalTransport } from '../electron/core/transport/local-transport';
import { SshTransport } from '../electron/core/transport/ssh-transport';
import { startSshd, makeClientHome } from '../test/support/sshd';
import { startTestVm } from '../test/support/qemu';

const N = Number(process.env.BENCH_N ?? 2000);
const BLOCK = 100;
const WARMUP = 200;

process.stdout.on('error', () => {}); // EPIPE when piped into head: still clean up

function percentiles(xs: number[]) {
  const s = [...xs].sort((a, b) => a - b);
  const at = (p: number) => s[Math.min(s.length - 1, Math.floor((p / 100) * s.length))]!;
  const r = (x: number) => Math.round(x * 1000) / 1000;
  return { n: s.length, p50: r(at(50)), p95: r(at(95)), p99: r(at(99)), max: r(s[s.length - 1]!) };
}

async function timeBlock(qmp: QmpClient, n: number, into: number[]) {
  for (let i = 0; i < n; i++) {
    const t0 = process.hrtime.bigint();
    await qmp.execute('query-migrate');
    into.push(Number(process.hrtime.bigint() - t0) / 1e6);
  }
}

const sshd = await startSshd();
const home = makeClientHome([sshd]);
home.trust(sshd);
// A second QMP monitor on the same VM: one QMP socket serves one client at a time.
const tunnelSocket = path.join(tmpdir(), `ferry-bench-${process.pid}.sock`);
const vm2 = await startTestVm({ extraArgs: ['-qmp', `unix:${tunnelSocket},server=on,wait=off`] });
const ssh = new SshTransport({ host: '127.0.0.1', port: sshd.port }, { homeDir: home.home, agent: false });
try {
  await ssh.connect();
  const direct = await QmpClient.connect(await new LocalTransport().openUnix(vm2.qmpPath));
  const tunnel = await QmpClient.connect(await ssh.openUnix(tunnelSocket));
  const warm: number[] = [];
  await timeBlock(direct, WARMUP, warm);
  await timeBlock(tunnel, WARMUP, warm);
  const d: number[] = [];
  const t: number[] = [];
  while (d.length < N) {
    await timeBlock(direct, Math.min(BLOCK, N - d.length), d);
    await timeBlock(tunnel, Math.min(BLOCK, N - t.length), t);
  }
  direct.close();
  tunnel.close();
  const dp = percentiles(d);
  const tp = percentiles(t);
  console.log(`direct unix socket: p50 ${dp.p50} ms  p95 ${dp.p95} ms  p99 ${dp.p99} ms`);
  console.log(`ssh streamlocal:    p50 ${tp.p50} ms  p95 ${tp.p95} ms  p99 ${tp.p99} ms`);
  console.log(JSON.stringify({
    bench: 'qmp',
    command: 'query-migrate',
    accel: vm2.accel,
    direct: dp,
    tunnel: tp,
    p50Ratio: Math.round((tp.p50 / dp.p50) * 100) / 100,
    targets: { p50RatioMax: 1.3, tunnelP99MaxMs: 2 },
    met: tp.p50 / dp.p50 <= 1.3 && tp.p99 <= 2,
  }));
} finally {
  await ssh.close();
  await vm2.stop();
  rmSync(tunnelSocket, { force: true });
  await sshd.stop();
  home.cleanup();
}
