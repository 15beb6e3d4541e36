import { describe, expect, it } from 'vitest';
import { execFileSync, spawn } from 'node:child_process';
import { existsSync, mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { createNetns, destroyNetns, labHosts, netnsAvailable, setLink, shapeLink } from './local-lab';
import { isAlive, killPid, waitFor } from '../../../test/support/processes';
import { NetnsTransport } from '../transport/local-transport';

const CLI = path.resolve('bin/ferry.mjs');

function ferry(args: string[], env: NodeJS.ProcessEnv): { code: number; out: string } {
  try {
    return { code: 0, out: execFileSync(CLI, args, { env: { ...process.env, ...env }, encoding: 'utf8', timeout: 60_000 }) };
  } catch (e) {
    const x = e as { status: number; stdout: string; stderr: string };
    return { code: x.status, out: `${x.stdout}${x.stderr}` };
  }
}

describe('the local lab through the ferry CLI', () => {
  it('lab up starts the demo VM on lab-a, vm list shows it, guest answers, lab down leaves nothing behind', () => {
    const root = mkdtempSync(path.join(tmpdir(), 'ferry-clilab-'));
    const env = { FERRY_LAB_DIR: root, XDG_CONFIG_HOME: path.join(root, 'cfg') };
    let pid: number | undefined;
    try {
      const up = ferry(['lab', 'up'], env);
      expect(up.code, up.out).toBe(0);
      expect(up.out).toMatch(/started demo on lab-a \((kvm|tcg), QEMU \d+\.\d+\.\d+, machine pc-i440fx-\d+\.\d+, pid \d+\) in \d+ ms/);
      console.log(`[lab] ${up.out.split('\n')[0]}`);
      pid = Number(/pid (\d+)/.exec(up.out)![1]);
      expect(isAlive(pid)).toBe(true);
      const list = ferry(['vm', 'list', 'lab-a', '--json'], env);
      expect(list.code).toBe(0);
      const vms = JSON.parse(list.out) as { name: string; runState: string; memoryMiB: number; pid: number; qmpSocket: string }[];
      expect(vms).toMatchObject([{ name: 'demo', runState: 'running', memoryMiB: 511.82, pid }]);
      expect(vms[0]!.qmpSocket).toBe(path.join(root, 'lab-a', 'demo', 'qmp.sock'));
      expect(ferry(['vm', 'list', 'lab-b'], env).out).toBe('');
      const rate = ferry(['guest', 'lab-a', 'demo', 'r 30'], env);
      expect(rate).toEqual({ code: 0, out: 'OK r rate=30\n' });
      expect(ferry(['guest', 'lab-a', 'demo', 'v'], env).out).toMatch(/^VERIFY result=ok pages=\d+ bad=0 stale=0/);
      expect(ferry(['guest', 'lab-a', 'demo', 'r -3'], env)).toMatchObject({ code: 1, out: expect.stringMatching(/guest refused "r -3"/) });
      expect(ferry(['guest', 'lab-a', 'ghost', 's'], env)).toMatchObject({ code: 1, out: expect.stringMatching(/no VM "ghost" on lab-a/) });
      expect(ferry(['lab', 'up', '--accel', 'warp'], env)).toMatchObject({ code: 2, out: expect.stringMatching(/--accel must be kvm, tcg or auto/) });
      expect(ferry(['vm', 'start', 'lab-b', 'bad name'], env)).toMatchObject({ code: 1, out: expect.stringMatching(/invalid VM name/) });
      expect(ferry(['lab', 'up'], env).out).toMatch(/already up/);
      const down = ferry(['lab', 'down'], env);
      expect(down).toEqual({ code: 0, out: 'stopped lab-a/demo\n' });
      expect(isAlive(pid)).toBe(false);
      expect(existsSync(root)).toBe(false);
    } finally {
      if (pid && isAlive(pid)) process.kill(pid, 'SIGKILL');
      rmSync(root, { recursive: true, force: true });
    }
  });
});

describe('the netns lab (two namespaces on a veth pair)', async () => {
  const avail = await netnsAvailable();
  const socat = (() => {
    try {
      execFileSync('socat', ['-V'], { stdio: 'ignore' });
      return true;
    } catch {
      return false;
    }
  })();
  if (!avail.ok || !socat) console.log(`[netns] skipped: ${avail.reason ?? 'socat missing'}`);

  it.skipIf(!avail.ok || !socat)('shapes the link to 200 Mbit/s (measured within 15 %), cuts and restores it', async () => {
    const prefix = `fty${process.pid % 10000}`;
    const ns = await createNetns(prefix);
    const sink = new NetnsTransport(ns.namespaces[1]);
    const source = new NetnsTransport(ns.namespaces[0]);
    let server: number | undefined;
    try {
      const hosts = labHosts('/nonexistent');
      expect(hosts.map((h) => h.id)).toEqual(['lab-a', 'lab-b']);
      await shapeLink(ns, 200e6);
      // A receiver in namespace b that counts bytes; a sender in a pushes for ~2 s.
      const port = 40000 + (process.pid % 1000);
      const recv = spawn('ip', ['netns', 'exec', ns.namespaces[1], 'socat', '-u', `TCP-LISTEN:${port},reuseaddr,fork`, 'OPEN:/dev/null'], { stdio: 'ignore' });
      server = recv.pid;
      await waitFor(async () => (await sink.exec(['sh', '-c', `ss -ltn | grep -q :${port}`])).code === 0, 'receiver listening');
      const bytes = 50_000_000;
      const t0 = process.hrtime.bigint();
      const send = await source.exec(['sh', '-c', `head -c ${bytes} /dev/zero | socat -u - TCP:${ns.addresses[1]}:${port}`], { timeoutMs: 30_000 });
      const secs = Number(process.hrtime.bigint() - t0) / 1e9;
      expect(send.code, send.stderr).toBe(0);
      const mbit = (bytes * 8) / secs / 1e6;
      console.log(`[netns] 200 Mbit/s tbf: measured ${mbit.toFixed(1)} Mbit/s over ${secs.toFixed(2)} s`);
      expect(Math.abs(mbit - 200) / 200).toBeLessThan(0.15);

      // Cut: a connection attempt fails; restore: it works again.
      await setLink(ns, false);
      const cut = await source.exec(['socat', '-u', 'OPEN:/dev/null', `TCP:${ns.addresses[1]}:${port},connect-timeout=1`]);
      expect(cut.code).not.toBe(0);
      await setLink(ns, true);
      await waitFor(async () => (await source.exec(['sh', '-c', `echo hi | socat -u - TCP:${ns.addresses[1]}:${port},connect-timeout=1`])).code === 0, 'link restored', 10_000);
    } finally {
      if (server) await killPid(server);
      await destroyNetns(ns);
    }
    const left = execFileSync('ip', ['netns', 'list'], { encoding: 'utf8' });
    expect(left).not.toContain(ns.namespaces[0]);
  });
});
