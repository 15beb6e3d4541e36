/**
 * Local-storage migration (plan `copyStorage`): the VM's disk images live on the source
 * host only, so they are copied while the guest runs, the way QEMU's
 * docs/interop/live-block-operations describe it: empty targets of the same format and
 * virtual size created on the destination (`qemu-img create`), exported writable by the
 * destination QEMU (started with `-incoming defer`) through its NBD server
 * (`nbd-server-start` + `block-export-add`), `drive-mirror` jobs on the source to those
 * exports, `BLOCK_JOB_READY` awaited, then the RAM migration.
 *
 * Switchover: the documented order is `block-job-cancel` on the source once the migration
 * has completed, then `nbd-server-stop` on the destination. Done literally, the destination
 * guest already runs while the cancelled mirror makes its final sync, and a block the source
 * dirtied just before it stopped could land on top of a newer write by the destination.
 * Ferry therefore migrates with `pause-before-switchover`: in `pre-switchover` the source
 * is stopped and the destination not yet running; the (graceful) `block-job-cancel` then
 * waits for the final synchronisation, and only then is the migration continued. The NBD
 * server is stopped once the migration has completed, as documented.
 *
 * Cancel at any point: the mirror jobs are force-cancelled (the source never pivots, so it
 * keeps running on its original images) and the partial targets are removed.
 */
import path from 'node:path';
import { FerryException } from '../../../shared/errors';
import type { HostConfig } from '../../../shared/model/host';
import type { StorageFigures } from '../../../shared/model/migration';
import type { HostTransport } from '../transport/host-transport';
import type { QmpClient, QmpEvent } from '../qmp/qmp-client';
import type { VmDiskSpec } from '../hosts/vm-launcher';
import { openStreamTunnel } from './stream-tunnel';
import type { StreamTunnel } from './stream-tunnel';
import { rootLog } from '../log';

const storageLog = rootLog.child('storage-copy');

export interface DiskCopy {
  /** The BlockBackend (-drive id) on both QEMUs, e.g. disk0. */
  device: string;
  jobId: string;
  source: string;
  target: string;
  format: 'raw' | 'qcow2';
  virtualSize: number;
  actualSize: number;
}

/** Where an image of `src` goes on `dst`: same place under the destination's images dir, else the same path. */
export function mapImagePath(src: HostConfig, dst: HostConfig, file: string): string {
  if (src.imagesDir && dst.imagesDir) {
    const rel = path.posix.relative(src.imagesDir, file);
    if (!rel.startsWith('..') && !path.posix.isAbsolute(rel)) return path.posix.join(dst.imagesDir, rel);
  }
  return file;
}

interface BlockInfo {
  device: string;
  inserted?: { file: string; ro: boolean; image: { 'virtual-size': number; 'actual-size'?: number; format: string } };
}

/** Free bytes on the filesystem holding `dir` (or its nearest existing parent). */
export async function freeBytes(t: HostTransport, dir: string): Promise<number | undefined> {
  for (let d = dir; ; d = path.posix.dirname(d)) {
    const r = await t.exec(['df', '-B1', '--output=avail', '--', d]).catch(storageLog.dropped(`df ${d} (free space unknown)`, 'debug'));
    if (r?.code === 0) {
      const n = Number(r.stdout.trim().split('\n').at(-1));
      return Number.isFinite(n) ? n : undefined;
    }
    if (d === '/') return undefined;
  }
}

/**
 * The disks a storage migration copies: those of the Ferry spec (`-drive id=diskN`), with
 * their size and format as the running source QEMU sees them, and their target paths.
 */
export async function planDiskCopies(src: { host: HostConfig; qmp: QmpClient }, dst: { host: HostConfig }, disks: readonly VmDiskSpec[] | undefined): Promise<DiskCopy[]> {
  if (!disks?.length) throw new FerryException('INVALID_REQUEST', 'the VM has no disks: there is no storage to copy (plan a migration without copyStorage)');
  const blocks = await src.qmp.execute<BlockInfo[]>('query-block');
  return disks.map((d, i) => {
    const device = `disk${i}`;
    const b = blocks.find((x) => x.device === device);
    if (!b?.inserted) throw new FerryException('NOT_FOUND', `the source QEMU has no disk ${device} (${d.path})`);
    if (b.inserted.ro) throw new FerryException('UNSUPPORTED', `${device} (${d.path}) is read-only: copy it by hand`);
    const format = b.inserted.image.format;
    if (format !== 'raw' && format !== 'qcow2') throw new FerryException('UNSUPPORTED', `${device} is ${format}: Ferry copies raw and qcow2 images`);
    return {
      device, jobId: `ferry-mirror-${device}`, source: d.path, target: mapImagePath(src.host, dst.host, d.path), format,
      virtualSize: b.inserted.image['virtual-size'], actualSize: b.inserted.image['actual-size'] ?? b.inserted.image['virtual-size'],
    };
  });
}

/** The same plan from the image files themselves (`qemu-img info -U`): for preflight, which keeps off the VM's monitors. */
export async function planDiskCopiesFromFiles(srcT: HostTransport, src: HostConfig, dst: HostConfig, disks: readonly VmDiskSpec[] | undefined): Promise<DiskCopy[]> {
  if (!disks?.length) throw new FerryException('INVALID_REQUEST', 'the VM has no disks: there is no storage to copy (plan a migration without copyStorage)');
  return Promise.all(disks.map(async (d, i) => {
    const r = await srcT.exec(['qemu-img', 'info', '-U', '--output=json', '--', d.path], { timeoutMs: 30_000 });
    if (r.code !== 0) throw new FerryException('NOT_FOUND', `cannot read ${d.path} on the source: ${r.stderr.trim()}`);
    const info = JSON.parse(r.stdout) as { format: string; 'virtual-size': number; 'actual-size'?: number };
    if (info.format !== 'raw' && info.format !== 'qcow2') throw new FerryException('UNSUPPORTED', `${d.path} is ${info.format}: Ferry copies raw and qcow2 images`);
    return {
      device: `disk${i}`, jobId: `ferry-mirror-disk${i}`, source: d.path, target: mapImagePath(src, dst, d.path), format: info.format,
      virtualSize: info['virtual-size'], actualSize: info['actual-size'] ?? info['virtual-size'],
    };
  }));
}

/** Preflight for copyStorage: targets absent, room for them, and no combination Ferry cannot do. */
export async function storageCheck(plan: { to: string; mode: string }, disks: readonly DiskCopy[], dst: HostTransport): Promise<{ status: 'pass' | 'warn' | 'fail'; reason: string; fix?: string }> {
  if (plan.mode !== 'precopy') return { status: 'fail', reason: 'Ferry does not combine postcopy with a storage copy yet', fix: 'plan precopy' };
  const present: string[] = [];
  for (const d of disks) if ((await dst.exec(['test', '-e', d.target])).code === 0) present.push(d.target);
  if (present.length) return { status: 'fail', reason: `already on ${plan.to}: ${present.join(', ')} (shared storage?)`, fix: 'migrate without --copy-storage, or remove the stale images there' };
  const need = disks.reduce((a, d) => a + d.actualSize, 0);
  const worst = disks.reduce((a, d) => a + d.virtualSize, 0);
  const dirs = [...new Set(disks.map((d) => path.posix.dirname(d.target)))];
  const free = Math.min(...(await Promise.all(dirs.map(async (dir) => (await freeBytes(dst, dir)) ?? Infinity))));
  const mib = (n: number) => `${Math.round(n / 1048576)} MiB`;
  const what = `${disks.length} disk(s), ${mib(need)} allocated (${mib(worst)} virtual), to ${dirs.join(', ')} on ${plan.to}`;
  if (!Number.isFinite(free)) return { status: 'warn', reason: `${what}; could not read the free space there` };
  if (free < need) return { status: 'fail', reason: `${what}: only ${mib(free)} free`, fix: 'free space on the destination or pick another one' };
  if (free < worst) return { status: 'warn', reason: `${what}: ${mib(free)} free, enough unless the guest fills its disks`, fix: 'free space on the destination' };
  return { status: 'pass', reason: `${what}; ${mib(free)} free` };
}

const sleep = (ms: number) => new Promise<void>((r) => setTimeout(r, ms));

/** One storage copy: targets, NBD exports, mirror jobs, and their figures. */
export class StorageCopy {
  private readonly ready = new Set<string>();
  private readonly failed = new Map<string, string>();
  private created: string[] = [];
  private readonly offs: (() => void)[] = [];
  private tunnel: StreamTunnel | undefined;
  private prev: { t: number; offset: number; len: number } | undefined;
  private nbdStarted = false;
  finalized = false;
  readonly startedAt = Date.now();
  readyAt: number | undefined;
  private lastFigures: StorageFigures | undefined;

  constructor(readonly disks: DiskCopy[], private readonly dst: HostTransport, private readonly note: (text: string) => void) {}

  /**
   * A copy a previous Ferry process started (found on resume): its targets and exports are
   * this copy's to finish or remove. Readiness and failures come from query-block-jobs.
   */
  adopt(): void {
    this.created = this.disks.map((d) => d.target);
    this.nbdStarted = true;
  }

  /** The destination's spec disks: the same disks at their target paths. */
  targetSpecDisks(disks: readonly VmDiskSpec[]): VmDiskSpec[] {
    return disks.map((d, i) => ({ ...d, path: this.disks[i]!.target }));
  }

  /** Empty images of the same format and virtual size on the destination. */
  async createTargets(): Promise<void> {
    for (const d of this.disks) {
      if ((await this.dst.exec(['test', '-e', d.target])).code === 0) {
        throw new FerryException('ALREADY_EXISTS', `${d.target} already exists on the destination: shared storage needs no copy, a stale image must be removed first`, { path: d.target });
      }
      await this.dst.exec(['mkdir', '-p', '--', path.posix.dirname(d.target)]);
      const r = await this.dst.exec(['qemu-img', 'create', '-q', '-f', d.format, '--', d.target, String(d.virtualSize)], { timeoutMs: 60_000 });
      if (r.code !== 0) throw new FerryException('EXEC_FAILED', `cannot create ${d.target} on the destination: ${r.stderr.trim() || `exit ${r.code}`}`);
      this.created.push(d.target);
    }
  }

  /**
   * NBD server on the destination exporting each target writable. Over TCP on `address`
   * (a free port is searched), or, through the SSH tunnel, on a unix socket in `destDir`
   * relayed to `sourceDir`. Returns the NBD URI base the source mirrors to.
   */
  async startExports(dq: QmpClient, via: { kind: 'tcp'; address: string } | { kind: 'tunnel'; src: HostTransport; sourceDir: string; destDir: string }): Promise<(exportName: string) => string> {
    let uriFor: (name: string) => string;
    if (via.kind === 'tunnel') {
      const destSock = `${via.destDir}/nbd-in.sock`;
      await dq.execute('nbd-server-start', { addr: { type: 'unix', data: { path: destSock } } });
      this.nbdStarted = true;
      this.tunnel = await openStreamTunnel(via.src, `${via.sourceDir}/nbd-out.sock`, this.dst, destSock, this.note);
      const srcSock = this.tunnel.sourceUri.slice('unix:'.length);
      uriFor = (name) => `nbd+unix:///${name}?socket=${srcSock}`;
    } else {
      const host = via.address.includes(':') ? `[${via.address}]` : via.address;
      let port = 0;
      for (let attempt = 0; ; attempt++) {
        port = 20000 + Math.floor(Math.random() * 40000);
        try {
          await dq.execute('nbd-server-start', { addr: { type: 'inet', data: { host: via.address, port: String(port) } } });
          break;
        } catch (e) {
          if (attempt >= 8) throw e;
        }
      }
      this.nbdStarted = true;
      uriFor = (name) => `nbd://${host}:${port}/${name}`;
    }
    const blocks = await dq.execute<{ device: string; inserted?: { 'node-name': string } }[]>('query-block');
    for (const d of this.disks) {
      const node = blocks.find((b) => b.device === d.device)?.inserted?.['node-name'];
      if (!node) throw new FerryException('INTERNAL', `the destination QEMU has no ${d.device}`);
      await dq.execute('block-export-add', { type: 'nbd', id: `ferry-export-${d.device}`, 'node-name': node, name: d.device, writable: true });
    }
    return uriFor;
  }

  /** Starts one drive-mirror per disk (listeners first), speed-capped when asked. */
  async startMirrors(sq: QmpClient, uriFor: (exportName: string) => string, speed: number | undefined): Promise<void> {
    const mine = (e: QmpEvent) => this.disks.some((d) => d.jobId === e.data.device);
    this.offs.push(sq.onEvent('BLOCK_JOB_READY', (e) => {
      if (!mine(e)) return;
      this.ready.add(String(e.data.device));
      if (this.ready.size === this.disks.length) this.readyAt = Date.now();
    }));
    for (const ev of ['BLOCK_JOB_ERROR', 'BLOCK_JOB_COMPLETED', 'BLOCK_JOB_CANCELLED']) {
      this.offs.push(sq.onEvent(ev, (e) => {
        if (!mine(e) || this.finalized) return;
        const err = typeof e.data.error === 'string' ? e.data.error : typeof e.data.action === 'string' ? `I/O error (${String(e.data.operation)}, action ${e.data.action})` : ev === 'BLOCK_JOB_CANCELLED' ? 'the mirror job was cancelled' : 'the mirror job ended early';
        this.failed.set(String(e.data.device), err);
      }));
    }
    for (const d of this.disks) {
      await sq.execute('drive-mirror', {
        'job-id': d.jobId, device: d.device, target: uriFor(d.device), format: 'raw', sync: 'full', mode: 'existing',
        ...(speed !== undefined ? { speed } : {}),
      });
    }
  }

  /** Resolves when every mirror is ready; rejects with the reason when one fails. */
  async waitReady(stopped: () => boolean): Promise<void> {
    while (this.ready.size < this.disks.length) {
      const failure = [...this.failed.entries()][0];
      if (failure) throw new FerryException('EXEC_FAILED', `storage copy of ${failure[0].replace('ferry-mirror-', '')} failed: ${failure[1]}`);
      if (stopped()) throw new FerryException('INVALID_REQUEST', 'storage copy stopped');
      await sleep(50);
    }
  }

  /** The figures last returned by figures() (final ones after the switchover). */
  get lastReported(): StorageFigures | undefined {
    return this.lastFigures;
  }

  get isReady(): boolean {
    return this.ready.size === this.disks.length;
  }

  /** Bytes copied / total over all jobs, with the copy and dirtying rates since the last call. */
  async figures(sq: QmpClient): Promise<StorageFigures | undefined> {
    if (this.finalized) return this.lastFigures;
    const jobs = (await sq.execute<{ device: string; len: number; offset: number; ready: boolean }[]>('query-block-jobs')).filter((j) => this.disks.some((d) => d.jobId === j.device));
    if (this.finalized) return this.lastFigures;
    // A job that ended before it was finalised failed (its event may have reached nobody).
    for (const d of this.disks) if (!jobs.some((j) => j.device === d.jobId) && !this.failed.has(d.jobId)) this.failed.set(d.jobId, 'the mirror job ended before the switchover');
    if (jobs.length === 0) return this.lastFigures;
    // Ready also from the jobs themselves: a BLOCK_JOB_READY sent while the monitor was being
    // reconnected reached nobody.
    for (const j of jobs) if (j.ready) this.ready.add(j.device);
    if (this.ready.size === this.disks.length && this.readyAt === undefined) this.readyAt = Date.now();
    const t = Date.now();
    const offset = jobs.reduce((a, j) => a + j.offset, 0);
    const len = jobs.reduce((a, j) => a + j.len, 0);
    const f: StorageFigures = { copiedBytes: offset, totalBytes: len, remainingBytes: Math.max(0, len - offset), ready: jobs.every((j) => j.ready), disks: jobs.length };
    if (this.prev && t > this.prev.t) {
      f.rate = Math.max(0, ((offset - this.prev.offset) * 1000) / (t - this.prev.t));
      // A mirror's total grows by what the guest dirties again behind it.
      f.dirtyRate = Math.max(0, ((len - this.prev.len) * 1000) / (t - this.prev.t));
    }
    this.prev = { t, offset, len };
    this.lastFigures = f;
    return f;
  }

  /**
   * In pre-switchover (source stopped, destination not yet running): a graceful
   * block-job-cancel per job waits for its final synchronisation; the source keeps its images.
   */
  async finalize(sq: QmpClient): Promise<void> {
    const last = await this.figures(sq).catch(storageLog.dropped('the last copy figures', 'debug'));
    this.finalized = true;
    if (last) this.lastFigures = { ...last, remainingBytes: 0, copiedBytes: last.totalBytes };
    const done = this.disks.map((d) => sq.waitForEvent('BLOCK_JOB_COMPLETED', { predicate: (e) => e.data.device === d.jobId, timeoutMs: 300_000 }));
    for (const d of this.disks) await sq.execute('block-job-cancel', { device: d.jobId });
    for (const ev of await Promise.all(done)) {
      if (typeof ev.data.error === 'string') throw new FerryException('EXEC_FAILED', `the final sync of ${String(ev.data.device)} failed: ${ev.data.error}`);
    }
    this.off();
  }

  /** After the migration completed: the destination's NBD server (and its exports) stop. */
  async stopExports(dq: QmpClient | undefined): Promise<void> {
    if (dq && !dq.closed && this.nbdStarted) await dq.execute('nbd-server-stop').catch(storageLog.dropped('nbd-server-stop on the destination'));
    this.nbdStarted = false;
    await this.tunnel?.close();
  }

  /** Any failure or cancel: mirrors force-cancelled (no pivot), the partial targets removed. */
  async abort(sq: QmpClient | undefined): Promise<void> {
    this.finalized = true;
    this.off();
    if (sq && !sq.closed) {
      for (const d of this.disks) await sq.execute('block-job-cancel', { device: d.jobId, force: true }).catch(storageLog.dropped(`block-job-cancel ${d.jobId}`));
      const deadline = Date.now() + 10_000;
      while (Date.now() < deadline) {
        const jobs = await sq.execute<{ device: string }[]>('query-block-jobs').catch((e: unknown) => (storageLog.dropped('query-block-jobs')(e), []));
        if (!jobs.some((j) => this.disks.some((d) => d.jobId === j.device))) break;
        await sleep(20);
      }
    }
    await this.tunnel?.close();
  }

  /** Removes the targets this copy created (call once the destination QEMU is gone). */
  async removeTargets(): Promise<string[]> {
    const removed = [...this.created];
    if (removed.length) await this.dst.exec(['rm', '-f', '--', ...removed]).catch(storageLog.dropped(`removing ${removed.join(', ')}`));
    this.created = [];
    return removed;
  }

  private off(): void {
    for (const o of this.offs.splice(0)) o();
  }
}
