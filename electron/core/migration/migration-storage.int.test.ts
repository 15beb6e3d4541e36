/**
 * Local-storage migration (copyStorage) of the demo guest with a qcow2 data disk between
 * the two hosts of a throwaway lab, each with its own images dir (real QEMU, NBD, mirror).
 * The disk is written through QEMU (HMP qemu-io) before, during and after the copy.
 */
import { afterEach, describe, expect, it } from 'vitest';
import { existsSync, mkdirSync, readFileSync } from 'node:fs';
import { execFileSync, spawn, spawnSync } from 'node:child_process';
import path from 'node:path';
import { makeTestLab } from '../../../test/support/lab';
import type { TestLab } from '../../../test/support/lab';
import { isAlive, killPid, waitFor } from '../../../test/support/processes';
import { QmpClient } from '../qmp/qmp-client';
import { LocalTransport } from '../transport/local-transport';
import { vmFiles } from '../hosts/vm-launcher';
import { readTimeline } from '../recorder/timeline-reader';
import type { PreflightResult } from '../../../shared/model/preflight';
import { MigrationPlanSchema } from '../../../shared/model/migration';
import { preflight } from './preflight';
import type { MigrationPhase } from '../../../shared/model/migration';

const local = new LocalTransport();

async function aux(lab: TestLab, hostId: string): Promise<QmpClient> {
  return QmpClient.connect(await local.openUnix(vmFiles(path.join(lab.root, hostId), 'demo').auxQmpSocket));
}

/** Writes a byte pattern to the VM's data disk through its QEMU (as the guest would). */
async function diskWrite(q: QmpClient, pattern: number, offsetMiB: number, lenMiB: number): Promise<void> {
  const out = await q.execute<string>('human-monitor-command', { 'command-line': `qemu-io disk0 "write -P 0x${pattern.toString(16)} ${offsetMiB}M ${lenMiB}M"` });
  expect(out).not.toMatch(/error|fail/i);
}

/** Whether `file` holds `pattern` over the range (read without taking QEMU's lock). */
function holds(file: string, pattern: number, offsetMiB: number, lenMiB: number): boolean {
  const r = spawnSync('qemu-io', ['-U', '-r', '-f', 'qcow2', '-c', `read -P 0x${pattern.toString(16)} ${offsetMiB}M ${lenMiB}M`, file], { encoding: 'utf8' });
  return r.status === 0 && !/Pattern verification failed|error/i.test(r.stdout + r.stderr);
}

const phasesOf = (file: string) => readTimeline(file).records.filter((r) => r.type === 'phase').map((r) => (r as { phase: MigrationPhase }).phase);

describe('local-storage migration (real QEMU, NBD + drive-mirror)', () => {
  let lab: TestLab | undefined;
  afterEach(async () => {
    await lab?.close();
    lab = undefined;
  });

  it('copies the disk while the guest runs, then migrates: images equal, guest memory verified', async () => {
    lab = await makeTestLab();
    await lab.up({ dataDiskMiB: 64, workload: { wsMiB: 32, rateMiBs: 10 } });
    const srcImage = path.join(lab.root, 'lab-a-images', 'demo-data.qcow2');
    const dstImage = path.join(lab.root, 'lab-b-images', 'demo-data.qcow2');
    const before = await aux(lab, 'lab-a');
    await diskWrite(before, 0x11, 0, 24);
    before.close(); // preflight asks the VM's aux monitor too

    const pre = await lab.service.invoke('migrations:preflight', { vm: 'demo', from: 'lab-a', to: 'lab-b', copyStorage: true });
    expect(pre.ok && (pre.value as PreflightResult).checks.find((c) => c.id === 'storage-copy')).toMatchObject({ status: 'pass', reason: expect.stringMatching(/1 disk\(s\).*lab-b-images.*free/) });

    const srcAux = await aux(lab, 'lab-a');
    const t0 = Date.now();
    const m = await lab.service.engine.start({ vm: 'demo', from: 'lab-a', to: 'lab-b', copyStorage: true, storageBandwidth: 16_000_000, maxBandwidth: 20_000_000 });
    expect(existsSync(dstImage)).toBe(true);
    await waitFor(() => m.phase === 'storage-copy' && (m.samples.at(-1)?.storage?.copiedBytes ?? 0) > 0, 'storage copy under way', 30_000);
    // the guest dirties the disk behind the mirror, and beyond what was allocated
    await diskWrite(srcAux, 0x22, 2, 4);
    await diskWrite(srcAux, 0x33, 40, 2);
    await waitFor(() => m.phase === 'precopy', 'RAM precopy', 60_000);
    // and once more while the RAM moves (the mirror is synchronising writes now)
    await diskWrite(srcAux, 0x44, 60, 1);
    const wroteDuringPrecopy = m.phase === 'precopy';
    const final = await m.whenDone();
    const tookMs = Date.now() - t0;
    srcAux.close();
    expect(final).toMatchObject({ outcome: 'completed', verify: { ok: true, bad: 0, stale: 0 } });
    expect(final.storage).toMatchObject({ disks: [{ source: srcImage, target: dstImage }] });
    expect(final.storage!.copiedBytes).toBeGreaterThanOrEqual(24 << 20);
    expect(final.storage!.readyMs).toBeGreaterThan(0);
    const phases = phasesOf(m.timelineFile);
    expect(phases.slice(0, 3)).toEqual(['reservation', 'storage-copy', 'setup']);
    expect(phases.at(-1)).toBe('completed');
    const copying = m.samples.filter((s) => s.phase === 'storage-copy' && s.storage);
    expect(copying.length).toBeGreaterThan(2);
    expect(copying.some((s) => (s.storage!.rate ?? 0) > 0)).toBe(true);

    // the destination runs on its own copy; its NBD server is gone; the source image stays
    const dq = await aux(lab, 'lab-b');
    const blocks = await dq.execute<{ device: string; inserted?: { file: string } }[]>('query-block');
    expect(blocks.find((b) => b.device === 'disk0')?.inserted?.file).toBe(dstImage);
    expect(await dq.execute('query-block-exports')).toEqual([]);
    const argv = JSON.parse(readFileSync(path.join(lab.root, 'lab-b', 'demo', 'argv.json'), 'utf8')) as { spec: { disks: { path: string }[] } };
    expect(argv.spec.disks[0]!.path).toBe(dstImage);
    expect(existsSync(srcImage)).toBe(true);
    // quiesced (source gone, destination stopped and flushed): the images are equal
    await dq.execute('stop');
    dq.close();
    expect(spawnSync('qemu-img', ['compare', '-U', '-f', 'qcow2', '-F', 'qcow2', srcImage, dstImage], { encoding: 'utf8' }).status).toBe(0);
    for (const [p, off, len] of [[0x11, 10, 14], [0x22, 2, 4], [0x33, 40, 2]] as const) expect(holds(dstImage, p, off, len)).toBe(true);
    expect(holds(srcImage, 0x44, 60, 1)).toBe(true);
    // (a write issued after the guest stopped would rightly not be there: only check one made while it ran)
    if (wroteDuringPrecopy) expect(holds(dstImage, 0x44, 60, 1)).toBe(true);
    else console.log('the precopy write landed after switchover began: not checked on the copy');
    console.log(`storage migration: ${final.storage!.copiedBytes} B copied, in sync after ${final.storage!.readyMs} ms; whole migration ${tookMs} ms (total-time ${final.totalTimeMs} ms, downtime ${final.downtimeMs} ms)`);
  });

  it('cancel during the storage copy leaves the source on its own disk and removes the partial target', async () => {
    lab = await makeTestLab();
    await lab.up({ dataDiskMiB: 64, workload: { wsMiB: 16, rateMiBs: 10 } });
    const srcImage = path.join(lab.root, 'lab-a-images', 'demo-data.qcow2');
    const dstImage = path.join(lab.root, 'lab-b-images', 'demo-data.qcow2');
    const srcAux = await aux(lab, 'lab-a');
    await diskWrite(srcAux, 0x5a, 0, 48);
    const m = await lab.service.engine.start({ vm: 'demo', from: 'lab-a', to: 'lab-b', copyStorage: true, storageBandwidth: 4_000_000 });
    await waitFor(() => m.phase === 'storage-copy' && (m.samples.at(-1)?.storage?.copiedBytes ?? 0) > 1_000_000, 'storage copy under way', 30_000);
    const destPid = (await lab.pidOn('lab-b'))!;
    expect(existsSync(dstImage)).toBe(true);
    await m.control({ action: 'cancel' });
    const final = await m.whenDone();
    expect(final).toMatchObject({ outcome: 'cancelled', verify: { ok: true } });
    expect(final.storage?.removedTargets).toEqual([dstImage]);
    expect(existsSync(dstImage)).toBe(false);
    expect(isAlive(destPid)).toBe(false);
    expect(phasesOf(m.timelineFile)).toEqual(['reservation', 'storage-copy', 'cancelled']);
    // the source runs on its original image, no job left, its data whole
    expect(await lab.pidOn('lab-a')).toBeGreaterThan(0);
    const blocks = await srcAux.execute<{ device: string; inserted?: { file: string } }[]>('query-block');
    expect(blocks.find((b) => b.device === 'disk0')?.inserted?.file).toBe(srcImage);
    expect(await srcAux.execute('query-block-jobs')).toEqual([]);
    expect((await srcAux.execute<{ status: string }>('query-status')).status).toBe('running');
    await diskWrite(srcAux, 0x6b, 50, 1); // still writable
    srcAux.close();
    expect(holds(srcImage, 0x5a, 0, 48)).toBe(true);
    expect(execFileSync('qemu-img', ['check', '-U', srcImage], { encoding: 'utf8' })).toMatch(/No errors/);
  });

  it('a Ferry restarted during the storage copy finishes it: disks in sync, RAM migrated, images equal', async () => {
    lab = await makeTestLab();
    await lab.up({ dataDiskMiB: 64, workload: { wsMiB: 16, rateMiBs: 10 } });
    const srcImage = path.join(lab.root, 'lab-a-images', 'demo-data.qcow2');
    const dstImage = path.join(lab.root, 'lab-b-images', 'demo-data.qcow2');
    const before = await aux(lab, 'lab-a');
    await diskWrite(before, 0x3c, 0, 32);
    before.close();
    const record = path.join(lab.configDir, 'restart-storage.ferry.jsonl');
    const cli = spawn(path.resolve('bin/ferry.mjs'), ['migrate', 'demo', '--from', 'lab-a', '--to', 'lab-b', '--copy-storage', '--storage-bandwidth', '8', '--record', record], {
      env: { ...process.env, FERRY_LAB_DIR: lab.root, XDG_CONFIG_HOME: lab.configDir },
      stdio: 'ignore',
    });
    try {
      await waitFor(() => existsSync(record) && readTimeline(record).samples.filter((x) => (x.storage?.copiedBytes ?? 0) > 0).length >= 3, 'the first process copying', 30_000);
    } finally {
      await killPid(cli.pid!, 0); // the mirrors belong to QEMU and go on
    }
    const copiedBefore = readTimeline(record).samples.at(-1)!.storage!.copiedBytes;
    expect(copiedBefore).toBeLessThan(64 << 20);
    const [m] = await lab.service.engine.recover(['lab-a', 'lab-b']);
    expect(m?.phase).toBe('storage-copy');
    const final = await m!.whenDone();
    expect(final).toMatchObject({ outcome: 'completed', verify: { ok: true } });
    const phases = phasesOf(record);
    expect(phases.indexOf('storage-copy')).toBeLessThan(phases.indexOf('setup'));
    expect(phases.at(-1)).toBe('completed');
    const dq = await aux(lab, 'lab-b');
    expect(await dq.execute('query-block-exports')).toEqual([]);
    await dq.execute('stop');
    dq.close();
    expect(spawnSync('qemu-img', ['compare', '-U', '-f', 'qcow2', '-F', 'qcow2', srcImage, dstImage]).status).toBe(0);
  });

  it('preflight: a disk missing on the destination fails the plain plan and offers the storage copy, with the free space', async () => {
    lab = await makeTestLab();
    await lab.up({ dataDiskMiB: 32, workload: { wsMiB: 8, rateMiBs: 0 } });
    const srcImage = path.join(lab.root, 'lab-a-images', 'demo-data.qcow2');
    // Both lab hosts share this filesystem: lab-b is made not to see the source's image.
    class WithoutImage extends LocalTransport {
      override exec(argv: readonly string[], options?: Parameters<LocalTransport['exec']>[1]) {
        if ((argv[0] === 'stat' || argv[0] === 'test') && argv.includes(srcImage)) return Promise.resolve({ code: 1, signal: null, stdout: '', stderr: 'No such file or directory' });
        return super.exec(argv, options);
      }
    }
    const hidden = new WithoutImage();
    const hosts = { host: (id: string) => lab!.service.registry.get(id), transport: async (id: string) => (id === 'lab-b' ? hidden : lab!.service.transportOf(id)) };
    const plain = await preflight(MigrationPlanSchema.parse({ vm: 'demo', from: 'lab-a', to: 'lab-b' }), hosts);
    expect(plain.ok).toBe(false);
    expect(plain.checks.find((c) => c.id === 'storage')).toMatchObject({
      status: 'fail', reason: expect.stringContaining(`${srcImage} missing`), fix: expect.stringMatching(/migrate with copyStorage \(--copy-storage\): 1 disk\(s\), 0 MiB allocated \(32 MiB virtual\), to .*lab-b-images on lab-b; \d+ MiB free/),
    });
    const copy = await preflight(MigrationPlanSchema.parse({ vm: 'demo', from: 'lab-a', to: 'lab-b', copyStorage: true }), hosts);
    expect(copy.checks.filter((c) => c.status === 'fail')).toEqual([]);
    expect(copy.checks.find((c) => c.id === 'storage-copy')).toMatchObject({ status: 'pass' });
  });

  it('refuses what it cannot do: a target already there, postcopy with a storage copy', async () => {
    lab = await makeTestLab();
    await lab.up({ dataDiskMiB: 8, workload: { wsMiB: 8, rateMiBs: 0 } });
    const r = await lab.service.invoke('migrations:start', { vm: 'demo', from: 'lab-a', to: 'lab-b', copyStorage: true, mode: 'postcopy' });
    expect(r).toMatchObject({ ok: false, error: { code: 'INVALID_REQUEST', message: expect.stringMatching(/postcopy with copyStorage/) } });
    mkdirSync(path.join(lab.root, 'lab-b-images'));
    execFileSync('qemu-img', ['create', '-q', '-f', 'qcow2', path.join(lab.root, 'lab-b-images', 'demo-data.qcow2'), '8M'], { stdio: 'ignore' });
    const pre = await lab.service.invoke('migrations:preflight', { vm: 'demo', from: 'lab-a', to: 'lab-b', copyStorage: true });
    expect(pre.ok && (pre.value as PreflightResult).checks.find((c) => c.id === 'storage-copy')).toMatchObject({ status: 'fail', reason: expect.stringMatching(/already on lab-b/) });
    const s = await lab.service.invoke('migrations:start', { vm: 'demo', from: 'lab-a', to: 'lab-b', copyStorage: true });
    expect(s).toMatchObject({ ok: false, error: { code: 'ALREADY_EXISTS', message: expect.stringMatching(/already exists on the destination/) } });
    // nothing started on lab-b, and the image there is not Ferry's to remove
    expect(await lab.pidOn('lab-b')).toBeUndefined();
    expect(existsSync(path.join(lab.root, 'lab-b-images', 'demo-data.qcow2'))).toBe(true);
    expect(await lab.pidOn('lab-a')).toBeGreaterThan(0);
  });
});
