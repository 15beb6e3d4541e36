/**
 * Recovery on real hosts: `ferry migrate` between two SSH hypervisors is killed with -9
 * mid-migration; `ferry recover` picks the migration up, its timeline goes on after a gap
 * record, `ferry control` (a third shell) acts through the recovering process, and the
 * migration completes with the guest's memory verified.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { spawn } from 'node:child_process';
import type { ChildProcess } from 'node:child_process';
import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { fleetAvailable, startDemo, startFleet } from '../support/fleet';
import type { Fleet } from '../support/fleet';
import { readTimeline } from '../../electron/core/recorder/timeline-reader';
import { kvmUsable } from '../support/qemu';
import { killPid, waitFor } from '../support/processes';
import { runCli } from '../support/cli';

const avail = fleetAvailable();
if (!avail.ok) console.log(`[fleet] recovery tests skipped: ${avail.reason}`);

function startCli(args: string[], env: Record<string, string>): { child: ChildProcess; out: () => string } {
  const child = spawn(process.execPath, ['--import', 'tsx', 'electron/cli.ts', ...args], { env: { ...process.env, SSH_AUTH_SOCK: '', ...env }, stdio: ['ignore', 'pipe', 'pipe'] });
  let out = '';
  child.stdout!.on('data', (c: Buffer) => (out += c.toString()));
  child.stderr!.on('data', (c: Buffer) => (out += c.toString()));
  return { child, out: () => out };
}

const exited = (c: ChildProcess) => new Promise<number | null>((r) => (c.exitCode !== null ? r(c.exitCode) : c.once('close', (code) => r(code))));

describe.skipIf(!avail.ok)('kill -9 mid-migration between SSH hosts, then ferry recover', () => {
  let fleet: Fleet;
  let cfg: string;
  let env: Record<string, string>;
  const children: ChildProcess[] = [];

  beforeAll(async () => {
    fleet = await startFleet();
    cfg = mkdtempSync(path.join(tmpdir(), 'ferry-recover-'));
    mkdirSync(path.join(cfg, 'ferry'));
    writeFileSync(path.join(cfg, 'ferry', 'hosts.json'), JSON.stringify({ version: 1, hosts: fleet.hostConfigs() }));
    env = { HOME: fleet.home, XDG_CONFIG_HOME: cfg, FERRY_LAB_DIR: path.join(cfg, 'lab') };
    // The guest is started the way a user would have: Ferry's launcher over SSH.
    const service = fleet.service();
    try {
      // 128 MiB dirtied at 60 MiB/s under a 20 MB/s cap: it cannot converge until told to.
      await startDemo(service, 'hv1', { wsMiB: 128, rateMiBs: 60 });
    } finally {
      await service.dispose();
    }
  });

  afterAll(async () => {
    for (const c of children) if (c.pid && c.exitCode === null) await killPid(c.pid);
    await fleet?.stop();
    if (cfg) rmSync(cfg, { recursive: true, force: true });
  });

  it('the migration is picked up, its timeline goes on after a gap, it completes with memory verified', async () => {
    const first = startCli(['migrate', 'demo', '--from', 'hv1', '--to', 'hv2', '--bandwidth', '20'], env);
    children.push(first.child);
    await waitFor(() => /pass [2-9]/.test(first.out()), 'the first ferry migrate in its second pass', 60_000);
    const timeline = /timeline (\S+\.ferry\.jsonl)/.exec(first.out())?.[1];
    expect(timeline).toBeTruthy();
    first.child.kill('SIGKILL');
    expect(await exited(first.child)).toBe(null);
    const killedAt = Date.now();

    // Nothing runs it now: a control says so and names the way out.
    const orphan = await runCli(['control', 'demo', 'bandwidth', '1000'], env);
    expect(orphan.code).toBe(1);
    expect(orphan.stderr).toMatch(/no Ferry process runs a migration "demo".*ferry recover/);

    const again = startCli(['recover'], env);
    children.push(again.child);
    await waitFor(() => /picked up \S+: demo hv1 -> hv2/.test(again.out()), 'ferry recover to pick the migration up', 60_000);
    const listed = await runCli(['migrations', '--json'], env);
    expect(listed.code).toBe(0);
    const running = JSON.parse(listed.stdout) as { pid: number; plan: { vm: string } }[];
    expect(running.map((m) => [m.pid, m.plan.vm])).toEqual([[again.child.pid, 'demo']]);
    // From a third shell: raise the bandwidth so that it converges, through the recovering process.
    const ctl = await runCli(['control', 'demo', 'bandwidth', '1000'], env);
    expect(ctl.stderr).toBe('');
    expect(ctl.stdout).toMatch(/bandwidth 1000: done \(demo \S+, through Ferry pid \d+\)/);
    expect(await exited(again.child)).toBe(0);
    expect(again.out()).toMatch(/completed; .*guest memory (verified|CORRUPT)/);
    if (kvmUsable()) expect(again.out()).toMatch(/guest memory verified/);

    const t = readTimeline(timeline!);
    expect(t.truncated).toBe(false);
    const gap = t.records.find((r) => r.type === 'gap') as { fromT: number; toT: number; reason: string } | undefined;
    expect(gap?.reason).toMatch(/Ferry restarted/);
    expect(gap!.fromT).toBeLessThanOrEqual(killedAt);
    expect(gap!.toT).toBeGreaterThan(killedAt);
    console.log(`[fleet] recovery gap ${gap!.toT - gap!.fromT} ms (kill -9 to pick-up)`);
    const control = t.records.find((r) => r.type === 'control') as { who: string; action: string } | undefined;
    expect(control).toMatchObject({ action: 'set-bandwidth' });
    expect(control!.who).toMatch(/^ferry control \(pid \d+/);
    expect(t.records.at(-1)).toMatchObject({ type: 'end', outcome: 'completed' });
    // Stale state is gone: a second recover finds nothing.
    const none = await runCli(['recover'], env);
    expect(none.stdout).toMatch(/^no migration to pick up on \d+ reachable host/);
  }, 240_000);
});
