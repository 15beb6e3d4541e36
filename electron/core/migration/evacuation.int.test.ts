import { afterEach, describe, expect, it } from 'vitest';
import path from 'node:path';
import { chmodSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { makeTestLab } from '../../../test/support/lab';
import type { TestLab } from '../../../test/support/lab';
import { demoVmSpec } from '../lab/local-lab';
import { launchVm } from '../hosts/vm-launcher';
import { LocalTransport } from '../transport/local-transport';
import type { EvacuationSummary } from './evacuation';
import { preflight } from './preflight';
import type { HostConfig } from '../../../shared/model/host';

const SMALL_KIB = 131_000; // ~128 MiB, not a multiple of 256 KiB

describe('evacuation and preflight (real QEMU)', () => {
  let lab: TestLab | undefined;
  afterEach(async () => {
    await lab?.close();
    lab = undefined;
  });

  it('evacuates three VMs, two at a time, all verified', async () => {
    lab = await makeTestLab();
    await lab.up({ memoryKiB: SMALL_KIB, workload: { wsMiB: 16, rateMiBs: 10 } });
    for (const name of ['demo2', 'demo3']) {
      await launchVm(new LocalTransport(), path.join(lab.root, 'lab-a'), demoVmSpec({ name, memoryKiB: SMALL_KIB, wsMiB: 16, rateMiBs: 10 }));
      await lab.waitGuest('lab-a', name);
    }
    const seen: EvacuationSummary[] = [];
    const r = await lab.service.invoke('evacuations:start', { from: 'lab-a', to: ['lab-b'], parallel: 2, defaults: { maxBandwidth: 100_000_000 } });
    expect(r.ok).toBe(true);
    const off = lab.service.on('evacuation:progress', (s) => seen.push(s as EvacuationSummary));
    const evac = lab.service.evacuations.values().next().value!;
    const sum = await evac.whenDone();
    off();
    expect(sum.items.map((i) => [i.vm, i.state]).sort()).toEqual([['demo', 'completed'], ['demo2', 'completed'], ['demo3', 'completed']]);
    const maxRunning = Math.max(...seen.map((s) => s.items.filter((i) => i.state === 'running').length));
    expect(maxRunning).toBe(2);
    for (const vm of ['demo', 'demo2', 'demo3']) {
      expect(await lab.pidOn('lab-b', vm)).toBeGreaterThan(0);
      expect(await lab.pidOn('lab-a', vm)).toBeUndefined();
    }
    const list = lab.service.engine.list();
    expect(list.every((m) => m.final?.verify?.ok === true)).toBe(true);
  });

  it('preflight passes on the lab and names each failure provoked for real', async () => {
    const fake = mkdtempSync(path.join(tmpdir(), 'ferry-noqemu-'));
    lab = await makeTestLab({}, (root) => [
      // lab-b's runtime dir, but its commands run with a PATH where qemu-system-x86_64 fails
      { id: 'broken-b', transport: { kind: 'local' }, runtimeDir: path.join(root, 'lab-b'), migrationAddress: '127.0.0.3' } satisfies HostConfig,
    ]);
    await lab.up({ workload: { wsMiB: 8, rateMiBs: 0 } });
    const hosts = { host: (id: string) => lab!.service.registry.get(id), transport: (id: string) => lab!.service.transportOf(id) };
    const ok = await preflight({ vm: 'demo', from: 'lab-a', to: 'lab-b', mode: 'postcopy' }, hosts);
    expect(ok.checks.filter((c) => c.status === 'fail')).toEqual([]);
    expect(ok.ok).toBe(true);
    expect(ok.checks.map((c) => c.id)).toEqual(expect.arrayContaining(['source-vm', 'destination-qemu', 'qemu-versions', 'machine-type', 'accelerator', 'memory', 'storage', 'name-free', 'migration-port', 'postcopy', 'capabilities', 'clock']));

    // the VM already running on the destination
    await launchVm(new LocalTransport(), path.join(lab.root, 'lab-b'), { name: 'demo', memoryKiB: 65_500, paused: true });
    const busy = await preflight({ vm: 'demo', from: 'lab-a', to: 'lab-b', mode: 'precopy' }, hosts);
    expect(busy.ok).toBe(false);
    expect(busy.checks.find((c) => c.id === 'name-free')).toMatchObject({ status: 'fail', reason: expect.stringMatching(/already runs on lab-b/) });

    // a kernel path missing on the destination: a source VM whose kernel lives in a dir we then hide
    const kdir = mkdtempSync(path.join(tmpdir(), 'ferry-kernel-'));
    const spec = demoVmSpec({ name: 'onlyhere', memoryKiB: 65_500 });
    writeFileSync(path.join(kdir, 'guest.elf'), '');
    const { copyFileSync } = await import('node:fs');
    copyFileSync(spec.kernel!, path.join(kdir, 'guest.elf'));
    await launchVm(new LocalTransport(), path.join(lab.root, 'lab-a'), { ...spec, kernel: path.join(kdir, 'guest.elf') });
    rmSync(kdir, { recursive: true, force: true });
    const missing = await preflight({ vm: 'onlyhere', from: 'lab-a', to: 'lab-b', mode: 'precopy' }, hosts);
    expect(missing.checks.find((c) => c.id === 'storage')).toMatchObject({ status: 'fail', reason: expect.stringMatching(/missing/) });

    // the requested capabilities are checked against what the source QEMU reports
    const caps = await preflight({ vm: 'demo', from: 'lab-a', to: 'lab-b', mode: 'precopy', multifdChannels: 2 }, hosts);
    expect(caps.checks.find((c) => c.id === 'capabilities')).toMatchObject({ status: 'pass' });
    // a capability this QEMU (7.2) does not have: switchover-ack came with 8.1
    const newer = await preflight({ vm: 'demo', from: 'lab-a', to: 'lab-b', mode: 'precopy', capabilities: { 'switchover-ack': true, 'zero-copy-send': false } }, hosts);
    const have = await lab.service.transportOf('lab-a').then(async () => (await import('node:child_process')).execFileSync('qemu-system-x86_64', ['--version']).toString());
    if (/version [0-7]\.|version 8\.0/.test(have)) {
      expect(newer.checks.find((c) => c.id === 'capabilities')).toMatchObject({ status: 'fail', reason: expect.stringMatching(/^lab-a's QEMU 7\.\d+\.\d+ has no switchover-ack; lab-b's QEMU 7\.\d+\.\d+ has no switchover-ack$/) });
      expect(newer.ok).toBe(false);
    } else {
      expect(newer.checks.find((c) => c.id === 'capabilities')).toMatchObject({ status: 'pass' });
    }

    // the destination's QEMU binary unavailable: a wrapper that fails, first on PATH for that host
    writeFileSync(path.join(fake, 'qemu-system-x86_64'), '#!/bin/sh\necho "qemu-system-x86_64: not installed here" >&2\nexit 127\n');
    chmodSync(path.join(fake, 'qemu-system-x86_64'), 0o755);
    const oldPath = process.env.PATH;
    process.env.PATH = `${fake}:${oldPath}`;
    try {
      const noQemu = await preflight({ vm: 'demo', from: 'lab-a', to: 'broken-b', mode: 'precopy' }, hosts);
      expect(noQemu.checks.find((c) => c.id === 'destination-qemu')).toMatchObject({ status: 'fail', reason: expect.stringMatching(/not found on broken-b/) });
      expect(noQemu.ok).toBe(false);
    } finally {
      process.env.PATH = oldPath;
      rmSync(fake, { recursive: true, force: true });
    }
  });

  it('a migration asking for a capability this QEMU lacks is refused before anything moves', async () => {
    const version = (await import('node:child_process')).execFileSync('qemu-system-x86_64', ['--version']).toString();
    if (!/version [0-7]\.|version 8\.0/.test(version)) return; // newer QEMU has switchover-ack
    lab = await makeTestLab();
    await lab.up({ memoryKiB: SMALL_KIB, workload: { wsMiB: 8, rateMiBs: 0 } });
    const pid = await lab.pidOn('lab-a');
    await expect(lab.service.engine.start({ vm: 'demo', from: 'lab-a', to: 'lab-b', capabilities: { 'switchover-ack': true } })).rejects.toThrow(/switchover-ack/);
    expect(await lab.pidOn('lab-a')).toBe(pid);
    expect(await lab.pidOn('lab-b')).toBeUndefined();
    const con = await lab.guest('lab-a');
    try {
      expect(await con.command('v', 20_000)).toMatchObject({ ok: true });
    } finally {
      con.close();
    }
  });
});
