/**
 * Migrations over SSH, through a dropped SSH connection, across a Ferry restart, and
 * watched (attach) while someone else runs them.
 */
import { afterEach, describe, expect, it } from 'vitest';
import { spawn } from 'node:child_process';
import { existsSync, readFileSync } from 'node:fs';
import path from 'node:path';
import { makeTestLab } from '../../../test/support/lab';
import type { TestLab } from '../../../test/support/lab';
import { makeClientHome, startSshd } from '../../../test/support/sshd';
import type { TestSshd } from '../../../test/support/sshd';
import { isAlive, killPid, waitFor } from '../../../test/support/processes';
import { readTimeline } from '../recorder/timeline-reader';
import { launchVm, readArgvRecord, vmFiles } from '../hosts/vm-launcher';
import { LocalTransport } from '../transport/local-transport';
import { QmpClient } from '../qmp/qmp-client';

describe('migration resilience (real QEMU, real sshd)', () => {
  let lab: TestLab | undefined;
  let sshd: TestSshd | undefined;
  let home: ReturnType<typeof makeClientHome> | undefined;
  afterEach(async () => {
    await lab?.close();
    await sshd?.stop();
    home?.cleanup();
    lab = undefined;
    sshd = undefined;
    home = undefined;
  });

  /** A lab whose lab-a is also reachable as "ssh-a", over SSH to 127.0.0.1. */
  async function sshLab(): Promise<TestLab> {
    sshd = await startSshd();
    home = makeClientHome([sshd]);
    home.trust(sshd);
    const port = sshd.port;
    return makeTestLab({ ssh: { homeDir: home.home, agent: false }, reconnectDelayMs: 100 }, (root) => [
      { id: 'ssh-a', transport: { kind: 'ssh', ssh: { host: '127.0.0.1', port, user: 'root' } }, runtimeDir: path.join(root, 'lab-a'), migrationAddress: '127.0.0.2' },
    ]);
  }

  it('migrates with the source reached over SSH (QMP and serial through the tunnel)', async () => {
    lab = await sshLab();
    await lab.up({ workload: { wsMiB: 32, rateMiBs: 20 } });
    const m = await lab.service.engine.start({ vm: 'demo', from: 'ssh-a', to: 'lab-b', maxBandwidth: 80_000_000 });
    const final = await m.whenDone();
    expect(final).toMatchObject({ outcome: 'completed', verify: { ok: true } });
    expect(final.guestDowntimeMs).toBeGreaterThan(0);
    expect(readTimeline(m.timelineFile).header?.source.label).toBe(`root@127.0.0.1:${sshd!.port}`);
    expect(await lab.pidOn('lab-b')).toBeGreaterThan(0);
    expect(await lab.pidOn('lab-a')).toBeUndefined();
  });

  it('goes on when the SSH connection to the source drops mid-migration, and marks the gap', async () => {
    lab = await sshLab();
    await lab.up({ workload: { wsMiB: 96, rateMiBs: 10 } });
    const m = await lab.service.engine.start({ vm: 'demo', from: 'ssh-a', to: 'lab-b', maxBandwidth: 25_000_000 });
    await waitFor(() => m.phase === 'precopy' && m.samples.length >= 3, 'precopy samples');
    const children = readFileSync(`/proc/${sshd!.pid}/task/${sshd!.pid}/children`, 'utf8').trim().split(/\s+/).filter(Boolean).map(Number);
    expect(children.length).toBeGreaterThan(0);
    for (const pid of children) process.kill(pid, 'SIGKILL');
    const final = await m.whenDone();
    expect(final.outcome).toBe('completed');
    const t = readTimeline(m.timelineFile);
    const gap = t.records.find((r) => r.type === 'gap') as { fromT: number; toT: number } | undefined;
    expect(gap).toBeDefined();
    expect(gap!.toT).toBeGreaterThanOrEqual(gap!.fromT);
    // sampling went on after the gap
    expect(t.samples.some((s) => s.t > gap!.toT)).toBe(true);
    expect(await lab.pidOn('lab-b')).toBeGreaterThan(0);
  });

  it('a restarted Ferry finds a running migration and records it to the end', async () => {
    lab = await makeTestLab();
    await lab.up({ workload: { wsMiB: 96, rateMiBs: 10 } });
    const record = path.join(lab.configDir, 'restart.ferry.jsonl');
    const cli = spawn(path.resolve('bin/ferry.mjs'), ['migrate', 'demo', '--from', 'lab-a', '--to', 'lab-b', '--bandwidth', '20', '--record', record], {
      env: { ...process.env, FERRY_LAB_DIR: lab.root, XDG_CONFIG_HOME: lab.configDir },
      stdio: 'ignore',
    });
    try {
      await waitFor(() => existsSync(record) && readTimeline(record).samples.length >= 5, 'the first process recording', 30_000);
    } finally {
      await killPid(cli.pid!, 0); // SIGTERM at once; the migration belongs to QEMU and goes on
    }
    expect(isAlive(cli.pid!)).toBe(false);
    const before = readTimeline(record).samples.length;
    const [m, ...others] = await lab.service.engine.recover(['lab-a', 'lab-b']);
    expect(others).toHaveLength(0);
    expect(m).toBeDefined();
    const final = await m!.whenDone();
    expect(final).toMatchObject({ outcome: 'completed', verify: { ok: true } });
    const t = readTimeline(record);
    expect(t.truncated).toBe(false);
    expect(t.samples.length).toBeGreaterThan(before);
    expect(t.records.some((r) => r.type === 'gap' && /restarted/.test((r as { reason: string }).reason))).toBe(true);
    expect(t.records.filter((r) => r.type === 'header')).toHaveLength(1);
    expect(existsSync(path.join(lab.root, 'lab-a', 'demo', 'migration.json'))).toBe(false);
    expect(await lab.pidOn('lab-a')).toBeUndefined();
  });

  it('attaches to a migration someone else runs, records it, and touches nothing', async () => {
    lab = await makeTestLab();
    await lab.up({ workload: { wsMiB: 64, rateMiBs: 10 } });
    const local = new LocalTransport();
    const src = vmFiles(path.join(lab.root, 'lab-a'), 'demo');
    const rec = (await readArgvRecord(local, src.argvFile))!;
    // "Someone else": a bare QMP script on the VM's main monitor.
    const dest = await launchVm(local, path.join(lab.root, 'lab-b'), { ...rec.spec, accel: rec.accel, extraArgs: ['-incoming', 'defer'] });
    const sq = await QmpClient.connect(await local.openUnix(src.qmpSocket));
    const dq = await QmpClient.connect(await local.openUnix(dest.qmpSocket));
    try {
      await sq.execute('migrate-set-parameters', { 'max-bandwidth': 30_000_000 });
      await dq.execute('migrate-incoming', { uri: 'tcp:127.0.0.3:0' });
      const port = (await dq.execute<{ 'socket-address': { port: string }[] }>('query-migrate'))['socket-address'][0]!.port;
      const watcher = await lab.service.engine.attach({ hostId: 'lab-a', vm: 'demo' });
      await sq.execute('migrate', { uri: `tcp:127.0.0.3:${port}` });
      const final = await watcher.whenDone();
      expect(final.outcome).toBe('completed');
      expect(final.verify).toBeUndefined(); // no guest command issued
      const t = readTimeline(watcher.timelineFile);
      expect(t.header?.mode).toBe('attach');
      expect(t.header?.parameters?.['max-bandwidth']).toBe(30_000_000);
      expect(t.samples.some((s) => s.phase === 'precopy')).toBe(true);
      expect(t.records.some((r) => r.type === 'control')).toBe(false);
      // the source QEMU is still there (paused after migrating): attach quit nothing
      expect(await sq.execute('query-status')).toMatchObject({ status: 'postmigrate' });
    } finally {
      sq.close();
      dq.close();
    }
  });
});
