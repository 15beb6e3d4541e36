/**
 * QEMUs Ferry did not start: the demo guest started as a script or a unit would
 * (`qemu-system-x86_64 ... -daemonize`, its own pid file and sockets), found through a host's
 * qmpSocketGlobs, migrated like a Ferry VM with its memory verified, and watched (attach)
 * from the console and the CLI. Real QEMU on the local lab.
 */
import { afterEach, describe, expect, it } from 'vitest';
import { spawn } from 'node:child_process';
import { existsSync, mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { Writable } from 'node:stream';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { makeTestLab } from '../../../test/support/lab';
import type { TestLab } from '../../../test/support/lab';
import { startPlainQemu } from '../../../test/support/qemu';
import type { PlainQemu } from '../../../test/support/qemu';
import { isAlive, killPid, waitFor } from '../../../test/support/processes';
import { readTimeline } from '../recorder/timeline-reader';
import { waitGuestReady } from '../lab/local-lab';
import { GuestConsole } from '../lab/demo-guest';
import { launchVm, readArgvRecord, stopVm, vmFiles } from '../hosts/vm-launcher';
import { HostRegistry } from '../hosts/host-registry';
import { socketOwnerPid } from '../hosts/adopted-qemu';
import { LocalTransport } from '../transport/local-transport';
import { QmpClient } from '../qmp/qmp-client';
import { main } from '../../cli';
import type { HostConfig } from '../../../shared/model/host';
import type { VmInfo } from '../../../shared/model/vm';
import type { PreflightResult } from '../../../shared/model/preflight';
import type { MigrationPhase } from '../../../shared/model/migration';

const local = new LocalTransport();
const phasesOf = (file: string) => readTimeline(file).records.filter((r) => r.type === 'phase').map((r) => (r as { phase: MigrationPhase }).phase);

/** A host whose VMs are started by scripts: Ferry finds their QMP sockets through a glob. */
const scriptsHost = (root: string): HostConfig => ({
  id: 'scripts', name: 'Scripts', transport: { kind: 'local' }, runtimeDir: path.join(root, 'scripts-ferry'),
  migrationAddress: '127.0.0.4', qmpSocketGlobs: [path.join(root, 'vms', '*', 'qmp.sock')],
});

async function cli(...argv: string[]): Promise<{ code: number; out: string; err: string }> {
  const text = { out: '', err: '' };
  const sink = (k: 'out' | 'err') => new Writable({ write(c: Buffer, _e, cb) { text[k] += c.toString(); cb(); } });
  const code = await main(argv, sink('out'), sink('err'));
  return { code, ...text };
}

describe('QEMUs Ferry did not start (real QEMU, local lab)', () => {
  let lab: TestLab | undefined;
  let plain: PlainQemu | undefined;
  const cleanups: (() => Promise<void> | void)[] = [];
  afterEach(async () => {
    await plain?.stop();
    plain = undefined;
    for (const c of cleanups.splice(0).reverse()) await c();
    await lab?.close();
    lab = undefined;
  });

  it('migrates one like its own: found through the globs, argv from /proc, memory verified, the source quit cleanly', async () => {
    lab = await makeTestLab({}, (root) => [scriptsHost(root)]);
    plain = await startPlainQemu({ dir: path.join(lab.root, 'vms', 'web1'), name: 'web1', wsMiB: 48, rateMiBs: 20 });
    await waitGuestReady(local, plain.serialSocket);

    // The board lists it as adopted and movable.
    const vms = await lab.service.invoke('vms:list', { hostId: 'scripts' });
    expect(vms).toEqual({ ok: true, value: [{ hostId: 'scripts', name: 'web1', qmpSocket: plain.qmpSockets[0]!, runState: 'running', managed: true, manager: 'qemu', pid: plain.pid, memoryMiB: 511.82, vcpus: 1 }] satisfies VmInfo[] });

    // When QMP's vCPU threads cannot lead to the process, the socket's owner does.
    expect(await socketOwnerPid(local, plain.qmpSockets[0]!)).toBe(plain.pid);
    expect(await socketOwnerPid(local, path.join(lab.root, 'vms', 'web1', 'nothing.sock'))).toBeUndefined();

    // Same preflight as a Ferry VM.
    const pre = await lab.service.invoke('migrations:preflight', { vm: 'web1', from: 'scripts', to: 'lab-b' });
    expect(pre.ok).toBe(true);
    const checks = (pre as { value: PreflightResult }).value;
    expect(checks.checks.filter((c) => c.status === 'fail')).toEqual([]);
    expect(checks.checks.find((c) => c.id === 'source-vm')?.reason).toMatch(new RegExp(`pid ${plain.pid}, started outside Ferry: adopted through .*qmp\\.sock`));

    const m = await lab.service.engine.start({ vm: 'web1', from: 'scripts', to: 'lab-b', maxBandwidth: 60_000_000, downtimeLimitMs: 50 });
    expect(m.summary()).toMatchObject({ driver: 'qmp', controls: expect.arrayContaining(['cancel', 'postcopy', 'stop-vm']) });
    const final = await m.whenDone();
    expect(final).toMatchObject({ outcome: 'completed', verify: { ok: true, bad: 0, stale: 0 } });
    expect(final.downtimeMs).toBeGreaterThan(0);
    expect(m.refused).toEqual([]);
    expect(phasesOf(m.timelineFile)).toEqual(['reservation', 'setup', 'precopy', 'stop-and-copy', 'commitment', 'activation', 'completed']);
    const t = readTimeline(m.timelineFile);
    expect(t.header?.vm.argv).toEqual(plain.argv);
    expect(t.records.some((r) => r.type === 'note' && /adopted QEMU \(pid \d+/.test((r as { text: string }).text))).toBe(true);

    // Its owner sees a QEMU that quit by itself: process gone, its pid file and sockets removed by QEMU.
    await waitFor(() => !isAlive(plain!.pid), 'the adopted source to exit');
    expect(existsSync(plain.pidFile)).toBe(false);
    expect(existsSync(plain.qmpSockets[0]!)).toBe(false);
    // Ferry's scratch dir beside it is gone too.
    expect(existsSync(path.join(lab.root, 'scripts-ferry', 'web1'))).toBe(false);

    // The destination is Ferry's: its runtime dir, the source's command line with every host-local path moved there.
    const dstPid = await lab.pidOn('lab-b', 'web1');
    expect(dstPid).toBeGreaterThan(0);
    const rec = (await readArgvRecord(local, vmFiles(path.join(lab.root, 'lab-b'), 'web1').argvFile))!;
    expect(rec.spec.argv).toEqual(plain.argv);
    expect(rec.argv.join(' ')).not.toContain(path.join(lab.root, 'vms'));
    expect(rec.argv.join(' ')).toContain(`-pidfile ${path.join(lab.root, 'lab-b', 'web1', 'pid')}`);
    expect(rec.argv.filter((a) => a === '-incoming')).toHaveLength(1);

    // And it moves on like any Ferry VM.
    const back = await lab.service.engine.start({ vm: 'web1', from: 'lab-b', to: 'lab-a', maxBandwidth: 60_000_000 });
    expect(await back.whenDone()).toMatchObject({ outcome: 'completed', verify: { ok: true } });
    const again = (await readArgvRecord(local, vmFiles(path.join(lab.root, 'lab-a'), 'web1').argvFile))!;
    expect(again.argv.join(' ')).not.toContain(path.join(lab.root, 'lab-b'));
    expect(await lab.pidOn('lab-a', 'web1')).toBeGreaterThan(0);
    await stopVm(local, path.join(lab.root, 'lab-a'), 'web1');
  });

  it('is watched from the console (found through the globs) and the CLI (--qmp-socket) while someone else migrates it', async () => {
    const xdg = mkdtempSync(path.join(tmpdir(), 'ferry-adopted-xdg-'));
    cleanups.push(() => rmSync(xdg, { recursive: true, force: true }));
    lab = await makeTestLab({}, (root) => [scriptsHost(root)]);
    const saved = { lab: process.env.FERRY_LAB_DIR, xdg: process.env.XDG_CONFIG_HOME };
    process.env.FERRY_LAB_DIR = lab.root;
    process.env.XDG_CONFIG_HOME = xdg;
    cleanups.push(() => {
      for (const [k, v] of [['FERRY_LAB_DIR', saved.lab], ['XDG_CONFIG_HOME', saved.xdg]] as const) {
        if (v === undefined) delete process.env[k];
        else process.env[k] = v;
      }
    });
    await new HostRegistry(path.join(xdg, 'ferry')).add(scriptsHost(lab.root));
    // One QMP socket per client: the console's (the glob's), the CLI's, the owner's.
    plain = await startPlainQemu({ dir: path.join(lab.root, 'vms', 'web2'), name: 'web2', wsMiB: 48, rateMiBs: 10, extraQmp: ['watch.sock', 'owner.sock'] });
    await waitGuestReady(local, plain.serialSocket);
    // The owner's settings, made before anyone watches: the watchers' headers show them.
    const sq = await QmpClient.connect(await local.openUnix(plain.qmpSockets[2]!));
    cleanups.push(() => sq.close());
    await sq.execute('migrate-set-parameters', { 'max-bandwidth': 40_000_000 });

    const watched = await lab.service.invoke('migrations:attach', { hostId: 'scripts', vm: 'web2' });
    expect(watched).toMatchObject({ ok: true, value: { driver: 'qmp', controls: [], phase: 'preflight' } });
    const console = lab.service.engine.get((watched as { value: { id: string } }).value.id);
    await expect(console.control({ action: 'cancel' })).rejects.toThrow(/watch-only/);

    const record = path.join(xdg, 'cli-attach.ferry.jsonl');
    const cliRun = cli('attach', 'scripts', 'web2', '--qmp-socket', plain.qmpSockets[1]!, '--record', record);
    await waitFor(() => existsSync(record) && readFileSync(record, 'utf8').includes('"mode":"attach"'), 'the CLI watching', 20_000);

    // Someone else migrates it, with their own destination and their own QMP client.
    const labB = path.join(lab.root, 'lab-b');
    const dest = await launchVm(local, labB, { name: 'web2', memoryKiB: 524_100, argv: plain.argv, extraArgs: ['-incoming', 'defer'] });
    cleanups.push(async () => void (await stopVm(local, labB, 'web2')));
    const dq = await QmpClient.connect(await local.openUnix(dest.qmpSocket));
    cleanups.push(() => dq.close());
    await dq.execute('migrate-incoming', { uri: 'tcp:127.0.0.3:0' });
    const port = (await dq.execute<{ 'socket-address': { port: string }[] }>('query-migrate'))['socket-address'][0]!.port;
    await sq.execute('migrate', { uri: `tcp:127.0.0.3:${port}` });

    const final = await console.whenDone();
    expect(final.outcome).toBe('completed');
    expect(final.verify).toBeUndefined(); // no guest command issued
    const t = readTimeline(console.timelineFile);
    expect(t.header).toMatchObject({ mode: 'attach', driver: 'qmp', parameters: { 'max-bandwidth': 40_000_000 } });
    expect(t.samples.some((s) => s.phase === 'precopy')).toBe(true);
    expect(phasesOf(console.timelineFile).at(-1)).toBe('completed');
    expect(t.records.filter((r) => r.type === 'control').map((r) => (r as { result: { ok: boolean } }).result.ok)).toEqual([false]);

    const c = await cliRun;
    expect(c.err).toBe('');
    expect(c.code).toBe(0);
    expect(c.out).toMatch(/watching web2 on scripts/);
    expect(c.out).toMatch(/^completed/m);
    const ct = readTimeline(record);
    expect(ct.header?.mode).toBe('attach');
    expect(ct.samples.some((s) => s.phase === 'precopy')).toBe(true);
    expect(ct.records.some((r) => r.type === 'control')).toBe(false);

    // Watching touched nothing: the source is left migrated-away and paused, as its owner left it.
    expect(await sq.execute('query-status')).toMatchObject({ status: 'postmigrate' });
    const con = await GuestConsole.open(local, dest.serialSocket);
    cleanups.push(() => con.close());
    expect(await con.command('v', 20_000)).toMatchObject({ kind: 'verify', ok: true });
  });

  it('a Ferry restarted mid-migration picks an adopted QEMU\'s migration up and records it to the end', async () => {
    const xdg = mkdtempSync(path.join(tmpdir(), 'ferry-adopted-xdg-'));
    cleanups.push(() => rmSync(xdg, { recursive: true, force: true }));
    lab = await makeTestLab({}, (root) => [scriptsHost(root)]);
    await new HostRegistry(path.join(xdg, 'ferry')).add(scriptsHost(lab.root));
    plain = await startPlainQemu({ dir: path.join(lab.root, 'vms', 'web4'), name: 'web4', wsMiB: 96, rateMiBs: 10 });
    await waitGuestReady(local, plain.serialSocket);
    const record = path.join(xdg, 'restart.ferry.jsonl');
    const first = spawn(path.resolve('bin/ferry.mjs'), ['migrate', 'web4', '--from', 'scripts', '--to', 'lab-b', '--bandwidth', '20', '--record', record], {
      env: { ...process.env, FERRY_LAB_DIR: lab.root, XDG_CONFIG_HOME: xdg },
      stdio: 'ignore',
    });
    try {
      await waitFor(() => existsSync(record) && readTimeline(record).samples.length >= 5, 'the first process recording', 30_000);
    } finally {
      await killPid(first.pid!, 0); // SIGTERM at once; the migration belongs to QEMU and goes on
    }
    const state = path.join(lab.root, 'scripts-ferry', 'web4', 'migration.json');
    expect(JSON.parse(readFileSync(state, 'utf8'))).toMatchObject({ adoptedSocket: plain.qmpSockets[0] });
    const [m, ...others] = await lab.service.engine.recover(['scripts', 'lab-b']);
    expect(others).toHaveLength(0);
    const final = await m!.whenDone();
    expect(final).toMatchObject({ outcome: 'completed', verify: { ok: true } });
    const t = readTimeline(record);
    expect(t.records.filter((r) => r.type === 'header')).toHaveLength(1);
    expect(t.records.some((r) => r.type === 'gap' && /restarted/.test((r as { reason: string }).reason))).toBe(true);
    expect(existsSync(path.join(lab.root, 'scripts-ferry', 'web4'))).toBe(false);
    await waitFor(() => !isAlive(plain!.pid), 'the adopted source to exit');
    expect(await lab.pidOn('lab-b', 'web4')).toBeGreaterThan(0);
  });

  it('says clearly what it cannot do for one', async () => {
    const xdg = mkdtempSync(path.join(tmpdir(), 'ferry-adopted-xdg-'));
    cleanups.push(() => rmSync(xdg, { recursive: true, force: true }));
    lab = await makeTestLab({}, (root) => [scriptsHost(root)]);
    plain = await startPlainQemu({ dir: path.join(lab.root, 'vms', 'web3'), name: 'web3', wsMiB: 8, rateMiBs: 0 });
    expect(await lab.service.invoke('migrations:attach', { hostId: 'scripts', vm: 'nope' })).toMatchObject({ ok: false, error: { code: 'NOT_FOUND', message: expect.stringMatching(/no running VM "nope" on scripts .*qmpSocketGlobs/) } });
    expect(await lab.service.invoke('migrations:start', { vm: 'web3', from: 'scripts', to: 'lab-b', copyStorage: true })).toMatchObject({ ok: false, error: { code: 'INVALID_REQUEST', message: 'web3 (a QEMU Ferry adopted, QMP) cannot copy storage (copyStorage)' } });
    expect(await lab.service.invoke('migrations:list', {})).toEqual({ ok: true, value: [] });
    expect(await lab.pidOn('lab-b', 'web3')).toBeUndefined();
    expect(isAlive(plain.pid)).toBe(true);
    const saved = process.env.XDG_CONFIG_HOME;
    process.env.XDG_CONFIG_HOME = xdg;
    try {
      const bad = await cli('attach', 'lab-a', 'bad name!');
      expect(bad.code).toBe(1);
      expect(bad.err).toMatch(/^ferry: attach: vm: VM name: .* \[INVALID_REQUEST\]\n$/);
      const relative = await cli('attach', 'lab-a', 'demo', '--qmp-socket', 'qmp.sock');
      expect(relative.code).toBe(2);
      expect(relative.err).toMatch(/--qmp-socket needs an absolute path/);
    } finally {
      if (saved === undefined) delete process.env.XDG_CONFIG_HOME;
      else process.env.XDG_CONFIG_HOME = saved;
    }
  });
});
