/**
 * Save -> restore of the demo guest through files on a throwaway local lab (real QEMU):
 * plain, compressed, gpg-encrypted to a throwaway key; corrupted, truncated and unloadable
 * files refused with nothing left running.
 */
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { execFileSync, spawn, spawnSync } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync, statSync, truncateSync, writeFileSync } from 'node:fs';
import { createHash } from 'node:crypto';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { makeTestLab, processesMentioning } from '../../../test/support/lab';
import type { TestLab } from '../../../test/support/lab';
import { killPid, waitFor } from '../../../test/support/processes';
import { readTimeline } from '../recorder/timeline-reader';
import { readPosition } from './vm-state';
import type { StateResult } from '../../../shared/model/saved-state';
import { QmpClient } from '../qmp/qmp-client';
import { LocalTransport } from '../transport/local-transport';

const gnupgHome = mkdtempSync(path.join(tmpdir(), 'ferry-gnupg-'));
const RECIPIENT = 'ferry-test@example.invalid';
const hasAge = spawnSync('age', ['--version']).status === 0;
if (!hasAge) console.log('[states] age is not installed here: the age test is skipped');

async function stopGpgAgents(): Promise<void> {
  for (const pid of processesMentioning(gnupgHome)) await killPid(pid);
}

describe('VM state to file and back (real QEMU + demo guest)', () => {
  let lab: TestLab | undefined;
  const previousHome = process.env.GNUPGHOME;

  beforeAll(() => {
    // QEMU runs the exec: pipelines with its own environment: it inherits this one.
    process.env.GNUPGHOME = gnupgHome;
    execFileSync('gpg', ['--batch', '--passphrase', '', '--quick-gen-key', RECIPIENT, 'default', 'default', 'never'], { stdio: 'ignore', env: process.env });
  });
  afterAll(async () => {
    await stopGpgAgents();
    rmSync(gnupgHome, { recursive: true, force: true });
    if (previousHome === undefined) delete process.env.GNUPGHOME;
    else process.env.GNUPGHOME = previousHome;
  });
  afterEach(async () => {
    await lab?.close();
    lab = undefined;
  });

  const invoke = async <T>(channel: string, req: Record<string, unknown>): Promise<T> => {
    const r = await lab!.service.invoke(channel, req);
    if (!r.ok) throw Object.assign(new Error(r.error.message), r.error);
    return r.value as T;
  };

  async function verifyGuest(hostId = 'lab-a', vm = 'demo'): Promise<void> {
    const con = await lab!.guest(hostId, vm);
    try {
      const v = await con.command('v', 30_000);
      expect(v).toMatchObject({ kind: 'verify', ok: true, bad: 0, stale: 0 });
      // it runs: its clock and its write counter move on between two status lines a heartbeat apart
      const a = await con.command('s');
      await con.waitFor((l) => l.parsed?.kind === 'heartbeat', 5000, 'a heartbeat');
      const b = await con.command('s');
      expect(a.kind === 'status' && b.kind === 'status' && b.tMs > a.tMs && b.writes > a.writes).toBe(true);
    } finally {
      con.close();
    }
  }

  for (const variant of [{ name: 'plain' }, { name: 'gzip', compress: 'gzip' }, { name: 'zstd', compress: 'zstd' }, { name: 'zstd + gpg', compress: 'zstd', encryptTo: RECIPIENT }] as const) {
    it(`saves and restores ${variant.name}: the guest continues with its memory intact`, async () => {
      lab = await makeTestLab();
      await lab.up({ workload: { wsMiB: 32, rateMiBs: 20 } });
      const srcPid = (await lab.pidOn('lab-a'))!;
      const samples: unknown[] = [];
      lab.service.on('state:sample', (p) => samples.push(p));
      const saved = await invoke<StateResult>('states:save', {
        hostId: 'lab-a', vm: 'demo', file: 'demo.state',
        ...('compress' in variant ? { compress: variant.compress } : {}), ...('encryptTo' in variant ? { encryptTo: variant.encryptTo } : {}),
      });
      // parked: the VM is gone, its state is in the file, described by the sidecar
      expect(await lab.pidOn('lab-a')).toBeUndefined();
      expect(processesMentioning(`${lab.root}/lab-a/demo/`).filter((p) => p === srcPid)).toEqual([]);
      const file = path.join(lab.root, 'lab-a-states', 'demo.state');
      expect(saved).toMatchObject({ op: 'save', file, runState: 'stopped', compression: 'compress' in variant ? variant.compress : 'none' });
      expect(statSync(file).size).toBe(saved.sizeBytes);
      const meta = JSON.parse(readFileSync(`${file}.ferry.json`, 'utf8')) as Record<string, unknown>;
      expect(meta).toMatchObject({ vm: 'demo', wasRunning: true, sizeBytes: saved.sizeBytes, sha256: createHash('sha256').update(readFileSync(file)).digest('hex') });
      expect(Array.isArray(meta.argv)).toBe(true);
      if ('encryptTo' in variant) {
        expect(meta.encryption).toEqual({ kind: 'gpg', recipient: RECIPIENT });
        // what is on disk is an OpenPGP message, not a QEMU stream
        expect(readFileSync(file).subarray(0, 4).toString('latin1')).not.toBe('QEVM');
      } else if (!('compress' in variant)) {
        expect(readFileSync(file).subarray(0, 4).toString('latin1')).toBe('QEVM');
      }
      expect(samples.length).toBeGreaterThan(0);
      const saveTimeline = readTimeline(saved.timeline);
      expect(saveTimeline.end).toMatchObject({ outcome: 'completed' });
      expect(saveTimeline.samples.at(-1)?.status).toBe('completed');
      expect(saveTimeline.samples.some((s) => (s.transferredBytes ?? 0) > 0)).toBe(true);

      const list = await invoke<{ file: string; complete: boolean; sizeBytes: number }[]>('states:list', { hostId: 'lab-a' });
      expect(list).toEqual([expect.objectContaining({ file, vm: 'demo', complete: true, sizeBytes: saved.sizeBytes })]);

      const restored = await invoke<StateResult>('states:restore', { hostId: 'lab-a', file: 'demo.state' });
      expect(restored).toMatchObject({ op: 'restore', vm: 'demo', runState: 'running' });
      expect(readTimeline(restored.timeline).end).toMatchObject({ outcome: 'completed' });
      await verifyGuest();
      console.log(`save/restore ${variant.name}: stream ${saved.streamBytes} B -> file ${saved.sizeBytes} B; save ${saved.tookMs} ms, restore ${restored.tookMs} ms`);
    });
  }

  it('keepRunning saves a checkpoint of a running guest and leaves it running', async () => {
    lab = await makeTestLab();
    await lab.up({ workload: { wsMiB: 16, rateMiBs: 10 } });
    const pid = await lab.pidOn('lab-a');
    const saved = await invoke<StateResult>('states:save', { hostId: 'lab-a', vm: 'demo', file: '/tmp/../' + path.join(lab.root, 'checkpoint.state').slice(1), keepRunning: true });
    expect(saved.file).toBe(path.join(lab.root, 'checkpoint.state'));
    expect(saved.runState).toBe('running');
    expect(await lab.pidOn('lab-a')).toBe(pid);
    await verifyGuest();
    // the file is not in the states dir: the listing does not show it
    expect(await invoke('states:list', { hostId: 'lab-a' })).toEqual([]);
  });

  it.skipIf(!hasAge)('encrypts to an age recipient where age is installed; restore needs the identity', async () => {
    lab = await makeTestLab();
    await lab.up({ workload: { wsMiB: 16, rateMiBs: 10 } });
    const keyFile = path.join(gnupgHome, 'age-key.txt');
    execFileSync('age-keygen', ['-o', keyFile], { stdio: 'ignore' });
    const recipient = execFileSync('age-keygen', ['-y', keyFile], { encoding: 'utf8' }).trim();
    const saved = await invoke<StateResult>('states:save', { hostId: 'lab-a', vm: 'demo', file: 'aged.state', compress: 'zstd', encryptTo: recipient });
    expect(saved.encryption).toBe('age');
    expect(readFileSync(saved.file).subarray(0, 21).toString('latin1')).toBe('age-encryption.org/v1');
    await expect(invoke('states:restore', { hostId: 'lab-a', file: 'aged.state' })).rejects.toMatchObject({ code: 'INVALID_REQUEST', message: expect.stringMatching(/encrypted with age: name the identity file/) });
    expect(await lab.pidOn('lab-a')).toBeUndefined();
    await invoke('states:restore', { hostId: 'lab-a', file: 'aged.state', identityFile: keyFile });
    await verifyGuest();
  });

  it('reads how far a restore pipeline has read the file (the position of the stage holding it)', async () => {
    const dir = mkdtempSync(path.join(tmpdir(), 'ferry-pos-'));
    const file = path.join(dir, 'some.state');
    writeFileSync(file, Buffer.alloc(100_000, 7));
    // a child of this process holding the file open at a known offset, as a pipeline stage would
    const child = spawn('sh', ['-c', 'exec 3<"$1"; dd bs=1000 count=3 <&3 >/dev/null 2>&1; exec sleep 30', 'holder', file], { stdio: 'ignore' });
    try {
      await waitFor(async () => ((await readPosition(new LocalTransport(), process.pid, file)) ?? 0) > 0, 'the holder to read from the file');
      expect(await readPosition(new LocalTransport(), process.pid, file)).toBe(3000);
      expect(await readPosition(new LocalTransport(), process.pid, path.join(dir, 'other.state'))).toBeUndefined();
    } finally {
      await killPid(child.pid!);
      rmSync(dir, { recursive: true, force: true });
    }
  });

  it('a paused VM is saved and comes back paused, where it was', async () => {
    lab = await makeTestLab();
    await lab.up({ workload: { wsMiB: 16, rateMiBs: 10 } });
    const auxSock = path.join(lab.root, 'lab-a', 'demo', 'qmp-aux.sock');
    const q = await QmpClient.connect(await new LocalTransport().openUnix(auxSock));
    await q.execute('stop');
    q.close();
    const saved = await invoke<StateResult>('states:save', { hostId: 'lab-a', vm: 'demo', file: 'paused.state', compress: 'gzip' });
    expect(JSON.parse(readFileSync(`${saved.file}.ferry.json`, 'utf8'))).toMatchObject({ wasRunning: false, compression: 'gzip' });
    const restored = await invoke<StateResult>('states:restore', { hostId: 'lab-a', file: 'paused.state', name: 'again' });
    expect(restored).toMatchObject({ vm: 'again', runState: 'paused' });
    const q2 = await QmpClient.connect(await new LocalTransport().openUnix(path.join(lab.root, 'lab-a', 'again', 'qmp-aux.sock')));
    await q2.execute('cont');
    q2.close();
    await verifyGuest('lab-a', 'again');
  });

  it('refuses to encrypt to a key the host does not have, starting nothing', async () => {
    lab = await makeTestLab();
    await lab.up({ workload: { wsMiB: 8, rateMiBs: 0 } });
    await expect(invoke('states:save', { hostId: 'lab-a', vm: 'demo', file: 'x.state', encryptTo: 'nobody@example.invalid' })).rejects.toMatchObject({ code: 'NOT_FOUND', message: expect.stringMatching(/no gpg public key for "nobody@example.invalid" on lab-a/) });
    expect(await lab.pidOn('lab-a')).toBeGreaterThan(0);
    expect(await invoke('states:list', { hostId: 'lab-a' })).toEqual([]);
  });

  it('refuses truncated, corrupted and unloadable files with a clear error, leaving nothing running', async () => {
    lab = await makeTestLab();
    await lab.up({ workload: { wsMiB: 16, rateMiBs: 10 } });
    await invoke('states:save', { hostId: 'lab-a', vm: 'demo', file: 'demo.state', compress: 'gzip' });
    const file = path.join(lab.root, 'lab-a-states', 'demo.state');
    const sidecar = `${file}.ferry.json`;
    const good = readFileSync(file);
    const meta = JSON.parse(readFileSync(sidecar, 'utf8')) as Record<string, unknown>;
    const noQemu = () => expect(processesMentioning(`${lab!.root}/lab-a/`)).toEqual([]);

    truncateSync(file, Math.floor(good.length / 2));
    await expect(invoke('states:restore', { hostId: 'lab-a', file: 'demo.state' })).rejects.toMatchObject({ code: 'STATE_CORRUPT', message: expect.stringMatching(/truncated/) });
    noQemu();

    const flipped = Buffer.from(good);
    flipped[Math.floor(flipped.length / 2)]! ^= 0xff;
    writeFileSync(file, flipped);
    await expect(invoke('states:restore', { hostId: 'lab-a', file: 'demo.state' })).rejects.toMatchObject({ code: 'STATE_CORRUPT', message: expect.stringMatching(/sha256/) });
    noQemu();

    // A file whose sidecar matches but whose content QEMU cannot load: QEMU fails, is cleaned up.
    const garbage = Buffer.concat([good.subarray(0, 64), Buffer.alloc(good.length - 64, 0x5a)]);
    writeFileSync(file, garbage);
    writeFileSync(sidecar, JSON.stringify({ ...meta, compression: 'none', sha256: createHash('sha256').update(garbage).digest('hex') }));
    await expect(invoke('states:restore', { hostId: 'lab-a', file: 'demo.state' })).rejects.toMatchObject({ code: 'STATE_LOAD_FAILED', message: expect.stringMatching(/could not load/) });
    noQemu();
    expect(await lab.pidOn('lab-a')).toBeUndefined();

    await expect(invoke('states:restore', { hostId: 'lab-a', file: 'missing.state' })).rejects.toMatchObject({ code: 'NOT_FOUND', message: expect.stringMatching(/no saved state/) });
    await expect(invoke('states:save', { hostId: 'lab-a', vm: 'ghost', file: 'x.state' })).rejects.toMatchObject({ code: 'NOT_FOUND', message: expect.stringMatching(/no running VM "ghost"/) });
    await expect(invoke('states:save', { hostId: 'lab-a', vm: 'demo', file: 'x.state', compress: 'xz' })).rejects.toMatchObject({ code: 'INVALID_REQUEST', message: expect.stringMatching(/compress/) });
    await expect(invoke('states:save', { hostId: 'lab-a', vm: 'demo', file: 'demo.state' })).rejects.toMatchObject({ code: 'ALREADY_EXISTS' });
  });
});
