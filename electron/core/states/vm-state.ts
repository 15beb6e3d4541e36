/**
 * VM state to a file and back, through QEMU's migration stream. QEMU 7.2 has no `file:`
 * URI, so the stream goes through `exec:` pipelines built from argv with the one shell-quote
 * function: save = `[compress] | [encrypt] | write`, restore = `[decrypt] | [decompress]`.
 *
 * Save stops the guest (a consistent image, written once), migrates it into the pipeline
 * while sampling `query-migrate` into a timeline like a migration's, then hashes the file
 * and writes the sidecar. Restore checks size and sha256 against the sidecar before starting
 * anything, starts QEMU with the same argv plus `-incoming defer`, and `migrate-incoming`s
 * from the pipeline; a QEMU that cannot load it is stopped by pid, so nothing half-started
 * is left.
 */
import { randomBytes } from 'node:crypto';
import path from 'node:path';
import { FerryException, toFerryError } from '../../../shared/errors';
import type { HostConfig } from '../../../shared/model/host';
import { DEFAULT_STATES_DIR } from '../../../shared/model/host';
import { sampleFromQueryMigrate } from '../../../shared/model/migration';
import type { MigrationPhase, MigrationSample } from '../../../shared/model/migration';
import { SIDECAR_SUFFIX, STATE_FORMAT, STATE_VERSION, SavedStateMetaSchema, encryptionFor } from '../../../shared/model/saved-state';
import type { Compression, Encryption, RestoreRequest, SaveRequest, SavedStateEntry, SavedStateMeta, StateResult } from '../../../shared/model/saved-state';
import { TIMELINE_FORMAT, TIMELINE_VERSION } from '../../../shared/model/timeline';
import type { TimelineRecord } from '../../../shared/model/timeline';
import type { HostTransport } from '../transport/host-transport';
import { quoteArg, quoteArgv } from '../transport/shell-quote';
import type { QmpClient } from '../qmp/qmp-client';
import { launchVm, processAlive, withIncomingDefer, readArgvRecord, readPid, stopVm, vmFiles } from '../hosts/vm-launcher';
import type { VmSpec } from '../hosts/vm-launcher';
import { memoryMiBFromArgv, runtimeDirOf } from '../hosts/vm-discovery';
import { FERRY_VERSION, openVmQmp } from '../migration/migration-engine';
import { featuresOf } from '../qmp/qmp-schema';
import type { MigrationFeatures } from '../qmp/qmp-schema';
import { machineTypeOfOption } from '../hosts/qemu-install';

/** multifd threads writing (and reading) a mapped-ram file: one per core of the small hosts Ferry is tested on. */
export const MAPPED_RAM_CHANNELS = 2;

/** The layout a save uses: mapped-ram needs QEMU 9.0+ (its schema has it) and no pipeline stage. */
export function chooseLayout(req: Pick<SaveRequest, 'layout' | 'compress' | 'encryptTo'>, f: MigrationFeatures, hostId: string): 'stream' | 'mapped-ram' {
  const wanted = req.layout ?? 'auto';
  const plain = (req.compress ?? 'none') === 'none' && req.encryptTo === undefined;
  const can = f.capabilities.includes('mapped-ram') && f.capabilities.includes('multifd');
  if (wanted === 'stream') return 'stream';
  if (wanted === 'mapped-ram') {
    if (!plain) throw new FerryException('INVALID_REQUEST', 'a mapped-ram state file is written by QEMU itself: it cannot be compressed or encrypted (use layout stream)');
    if (!can) throw new FerryException('UNSUPPORTED', `${hostId}'s QEMU${f.version ? ` ${f.version}` : ''} has no mapped-ram (QEMU 9.0+)`);
    return 'mapped-ram';
  }
  return plain && can ? 'mapped-ram' : 'stream';
}
import { TimelineWriter } from '../recorder/timeline-writer';
import { rootLog } from '../log';

const stateLog = rootLog.child('states');

export function statesDirOf(host: HostConfig): string {
  return host.statesDir ?? DEFAULT_STATES_DIR;
}

/** The state file's absolute path on the host: relative names live in its states dir. */
export function resolveStatePath(host: HostConfig, file: string): string {
  const p = path.posix.isAbsolute(file) ? path.posix.normalize(file) : path.posix.join(statesDirOf(host), file);
  if (p.endsWith('/')) throw new FerryException('INVALID_REQUEST', `state file ${JSON.stringify(file)} names a directory`);
  return p;
}

export const sidecarOf = (file: string) => `${file}${SIDECAR_SUFFIX}`;

/** The stages that turn the raw stream into what is stored (compress, then encrypt). */
export function encodeStages(compression: Compression, encryption: Encryption | undefined): string[][] {
  const stages: string[][] = [];
  if (compression === 'gzip') stages.push(['gzip', '-c']);
  if (compression === 'zstd') stages.push(['zstd', '-q', '-c']);
  if (encryption?.kind === 'gpg') {
    // Compression is the user's choice above: gpg must not compress again.
    stages.push(['gpg', '--batch', '--yes', '--quiet', '--trust-model', 'always', '--compress-algo', 'none', '--encrypt', '--recipient', encryption.recipient, '--output', '-']);
  }
  if (encryption?.kind === 'age') stages.push(['age', '--encrypt', '--recipient', encryption.recipient]);
  return stages;
}

/**
 * The save pipeline. QEMU SIGTERMs the `sh` running an exec: URI 10 ms after it closes the
 * stream, while the last stage may still be flushing: the stage that writes the file runs
 * in its own subshell (it outlives `sh`) and renames the file to `written` only once it is
 * whole, so Ferry waits for that name before hashing.
 */
export function savePipeline(stages: string[][], partial: string, written: string): string {
  const all = stages.length ? stages : [['cat']];
  const head = all.slice(0, -1).map((s) => quoteArgv(s));
  const last = `{ ${quoteArgv(all.at(-1)!)} > ${quoteArg(partial)} && ${quoteArgv(['mv', '-f', '--', partial, written])}; }`;
  return [...head, last].join(' | ');
}

/** The restore pipeline: read (decrypt) the file, then decompress, to QEMU's stdin. */
export function restorePipeline(file: string, compression: Compression, encryption: Encryption | undefined, identityFile?: string): string {
  const stages: string[][] = [];
  if (encryption?.kind === 'gpg') stages.push(['gpg', '--batch', '--quiet', '--decrypt', '--', file]);
  else if (encryption?.kind === 'age') {
    if (!identityFile) throw new FerryException('INVALID_REQUEST', `${file} is encrypted with age: name the identity file that decrypts it`);
    stages.push(['age', '--decrypt', '--identity', identityFile, '--', file]);
  }
  const decompress = compression === 'gzip' ? ['gzip', '-d', '-c'] : compression === 'zstd' ? ['zstd', '-q', '-d', '-c'] : undefined;
  if (stages.length === 0) stages.push(decompress ? [...decompress, '--', file] : ['cat', '--', file]);
  else if (decompress) stages.push(decompress);
  return stages.map((s) => quoteArgv(s)).join(' | ');
}

async function requireTools(t: HostTransport, hostId: string, stages: string[][]): Promise<void> {
  for (const prog of new Set(stages.map((s) => s[0]!))) {
    const r = await t.exec([prog, '--version'], { timeoutMs: 10_000 }).catch(stateLog.dropped(`${prog} --version (treated as not installed)`, 'debug'));
    if (!r || r.code !== 0) throw new FerryException('UNSUPPORTED', `${prog} is not installed on ${hostId}`, { host: hostId, program: prog });
  }
}

async function exists(t: HostTransport, p: string): Promise<boolean> {
  return (await t.exec(['test', '-e', p])).code === 0;
}

async function statSize(t: HostTransport, p: string): Promise<{ size: number; mtimeMs: number } | undefined> {
  const r = await t.exec(['stat', '-L', '-c', '%s %Y', '--', p]);
  if (r.code !== 0) return undefined;
  const [size, mtime] = r.stdout.trim().split(' ').map(Number);
  return { size: size!, mtimeMs: mtime! * 1000 };
}

async function sha256Of(t: HostTransport, p: string): Promise<string> {
  const r = await t.exec(['sha256sum', '--', p], { timeoutMs: 600_000 });
  const m = /^([0-9a-f]{64})\s/.exec(r.stdout);
  if (r.code !== 0 || !m) throw new FerryException('IO_ERROR', `cannot hash ${p}: ${r.stderr.trim() || `exit ${r.code}`}`);
  return m[1]!;
}

const sleep = (ms: number) => new Promise<void>((r) => setTimeout(r, ms));

export interface StateProgress {
  id: string;
  op: 'save' | 'restore';
  sample: MigrationSample;
}

export interface StateJobOptions {
  timelineDir: string;
  onSample?: (p: StateProgress) => void;
}

/** One save or restore: its timeline (same format as a migration's) and its samples. */
class StateJob {
  readonly id: string;
  readonly startedAt = Date.now();
  readonly timelineFile: string;
  private writer: TimelineWriter | undefined;
  phase: MigrationPhase = 'preflight';
  stopped = false;
  readonly samples: MigrationSample[] = [];

  constructor(readonly op: 'save' | 'restore', readonly hostId: string, readonly vm: string, private readonly options: StateJobOptions) {
    this.id = `${new Date(this.startedAt).toISOString().replace(/[-:]/g, '').replace(/\..*/, '')}-${op}-${vm}-${randomBytes(3).toString('hex')}`;
    this.timelineFile = path.join(options.timelineDir, `${this.id}.ferry.jsonl`);
  }

  open(label: string, file: string, argv: string[] | undefined, qemuVersion: string | undefined, extra: Record<string, unknown>): void {
    const mem = argv ? memoryMiBFromArgv(argv) : undefined;
    this.writer = new TimelineWriter(this.timelineFile, {
      type: 'header', format: TIMELINE_FORMAT, version: TIMELINE_VERSION, ferryVersion: FERRY_VERSION, migrationId: this.id,
      createdAt: this.startedAt, mode: 'engine',
      source: this.op === 'save' ? { id: this.hostId, label, ...(qemuVersion ? { qemuVersion } : {}) } : { id: `file:${file}`, label: file },
      destination: this.op === 'save' ? { id: `file:${file}`, label: file } : { id: this.hostId, label, ...(qemuVersion ? { qemuVersion } : {}) },
      vm: { name: this.vm, ...(argv ? { argv } : {}), ...(mem !== undefined ? { memoryMiB: mem } : {}) },
      parameters: { operation: this.op, file, ...extra },
    });
  }

  rec(r: TimelineRecord): void {
    this.writer?.append(r);
  }

  setPhase(phase: MigrationPhase, reason?: string): void {
    if (phase === this.phase) return;
    this.rec(reason ? { type: 'phase', t: Date.now(), phase, from: this.phase, reason } : { type: 'phase', t: Date.now(), phase, from: this.phase });
    this.phase = phase;
  }

  sample(raw: Record<string, unknown>, extra: Partial<MigrationSample> = {}): MigrationSample {
    const now = Date.now();
    const status = typeof raw.status === 'string' ? raw.status : 'none';
    if (status === 'active' || status === 'device') this.setPhase(this.stopped ? 'stop-and-copy' : 'precopy');
    const s = { ...sampleFromQueryMigrate(raw, now, now - this.startedAt, this.phase), ...extra };
    this.samples.push(s);
    this.rec({ type: 'sample', ...s });
    this.options.onSample?.({ id: this.id, op: this.op, sample: s });
    return s;
  }

  end(outcome: 'completed' | 'failed', reason?: string, figures: Record<string, number> = {}): void {
    this.setPhase(outcome, reason);
    this.rec({ type: 'end', t: Date.now(), outcome, ...(reason ? { reason } : {}), ...figures });
    this.writer?.close();
  }

  /** Samples query-migrate until the stream ends; resolves with the last reply. */
  /** `probe` adds figures QEMU does not give (a restore's incoming side reports no bytes). */
  async run(q: QmpClient, intervalMs: number, probe?: () => Promise<Partial<MigrationSample>>): Promise<Record<string, unknown>> {
    let ended: (() => void) | undefined;
    const endedP = new Promise<void>((r) => (ended = r));
    const off = q.onEvent('MIGRATION', (e) => {
      this.rec({ type: 'event', t: e.timeMs, side: this.op === 'save' ? 'source' : 'destination', event: e.event, data: e.data });
      if (['completed', 'failed', 'cancelled'].includes(String(e.data.status))) ended?.();
    });
    const offClose = q.onClose(() => ended?.());
    try {
      for (;;) {
        const raw = await q.execute<Record<string, unknown>>('query-migrate', undefined, { timeoutMs: 10_000 }).catch(stateLog.dropped('a progress sample', 'debug'));
        if (!raw) return { status: 'failed', 'error-desc': 'QEMU went away while the state was being transferred' };
        const extra = probe && raw.status === 'active' ? await probe().catch(() => ({})) : {};
        const s = this.sample(raw, extra);
        if (['completed', 'failed', 'cancelled'].includes(s.status)) return raw;
        await Promise.race([endedP, sleep(intervalMs)]);
      }
    } finally {
      off();
      offClose();
    }
  }
}

function tryRm(t: HostTransport, ...paths: string[]): Promise<unknown> {
  return t.exec(['rm', '-f', '--', ...paths]).catch(stateLog.dropped(`removing ${paths.join(', ')}`));
}

/** Saves `req.vm`'s state to a file on its host. Throws (with the VM as it was) on failure. */
export async function saveState(host: HostConfig, t: HostTransport, req: SaveRequest, options: StateJobOptions): Promise<StateResult> {
  const file = resolveStatePath(host, req.file);
  const sidecar = sidecarOf(file);
  const compression: Compression = req.compress ?? 'none';
  const encryption = encryptionFor(req.encryptTo);
  const stages = encodeStages(compression, encryption);
  if (await exists(t, file)) throw new FerryException('ALREADY_EXISTS', `${file} already exists on ${host.id}: pick another name or delete it`, { file });
  if (await exists(t, sidecar)) throw new FerryException('ALREADY_EXISTS', `${sidecar} already exists on ${host.id}`, { file: sidecar });
  await requireTools(t, host.id, stages);
  if (encryption?.kind === 'gpg') {
    const r = await t.exec(['gpg', '--batch', '--list-keys', '--', encryption.recipient]);
    if (r.code !== 0) throw new FerryException('NOT_FOUND', `no gpg public key for "${encryption.recipient}" on ${host.id}`, { recipient: encryption.recipient });
  }
  const files = vmFiles(runtimeDirOf(host), req.vm);
  const record = await readArgvRecord(t, files.argvFile);
  const pid = await readPid(t, files.pidFile);
  if (!record || !pid || !(await processAlive(t, pid))) {
    throw new FerryException('NOT_FOUND', `no running VM "${req.vm}" started by Ferry on ${host.id}`, { vm: req.vm, host: host.id });
  }
  const mk = await t.exec(['mkdir', '-p', '--', path.posix.dirname(file)]);
  if (mk.code !== 0) throw new FerryException('IO_ERROR', `cannot create ${path.posix.dirname(file)} on ${host.id}: ${mk.stderr.trim()}`);

  const q = await openVmQmp(t, files);
  const job = new StateJob('save', host.id, req.vm, options);
  const partial = `${file}.partial`;
  const written = `${file}.written`;
  let wasRunning = false;
  let moved = false;
  try {
    const st = await q.execute<{ status: string; running: boolean }>('query-status');
    const prior = await q.execute<{ status?: string }>('query-migrate');
    if (prior.status && !['none', 'completed', 'failed', 'cancelled'].includes(prior.status)) {
      throw new FerryException('ALREADY_EXISTS', `VM "${req.vm}" on ${host.id} is migrating (status ${prior.status}): save it afterwards`);
    }
    if (st.status === 'inmigrate' || st.status === 'postmigrate') throw new FerryException('INVALID_REQUEST', `VM "${req.vm}" on ${host.id} is ${st.status}: nothing consistent to save`);
    wasRunning = st.running;
    const v = q.greeting.version?.qemu;
    const qemuVersion = v ? `${v.major}.${v.minor}.${v.micro}` : undefined;
    job.open(t.label, file, record.argv, qemuVersion, { compression, ...(encryption ? { encryption: encryption.kind } : {}) });
    job.setPhase('setup');
    const t0 = Date.now();
    if (wasRunning) {
      await q.execute('stop');
      job.rec({ type: 'note', t: Date.now(), text: 'guest paused for a consistent image' });
    }
    job.stopped = true;
    // Nothing left over from an earlier migration of this VM may change the stream's format;
    // what this QEMU's schema lacks is off by definition and not sent.
    const features = await featuresOf(q);
    const layout = chooseLayout(req, features, host.id);
    const mapped = layout === 'mapped-ram';
    const caps: Record<string, boolean> = { events: true, 'postcopy-ram': false, multifd: mapped, xbzrle: false, 'pause-before-switchover': false, 'mapped-ram': mapped, 'auto-converge': false, 'dirty-limit': false };
    await q.execute('migrate-set-capabilities', { capabilities: Object.entries(caps).filter(([k]) => features.capabilities.includes(k)).map(([capability, state]) => ({ capability, state })) });
    // Without it QEMU 7.2 caps the stream at ~1 Gbit/s.
    await q.execute('migrate-set-parameters', { 'max-bandwidth': 10_000_000_000, ...(mapped ? { 'multifd-channels': MAPPED_RAM_CHANNELS } : {}) });
    await tryRm(t, partial, written);
    job.rec({ type: 'note', t: Date.now(), text: mapped ? `mapped-ram: QEMU writes ${partial} itself (file: URI, ${MAPPED_RAM_CHANNELS} multifd channels)` : `stream through exec: ${savePipeline(stages, partial, written)}` });
    await q.execute('migrate', { uri: mapped ? `file:${partial}` : `exec:${savePipeline(stages, partial, written)}` });
    const last = await job.run(q, req.sampleIntervalMs ?? 100);
    if (last.status !== 'completed') {
      throw new FerryException('EXEC_FAILED', `saving ${req.vm} failed: ${typeof last['error-desc'] === 'string' ? last['error-desc'] : `migration ${String(last.status)}`}`);
    }
    if (mapped) {
      // QEMU closed the file when it said completed: it is whole.
      const mv = await t.exec(['mv', '-f', '--', partial, written]);
      if (mv.code !== 0) throw new FerryException('IO_ERROR', `cannot rename ${partial}: ${mv.stderr.trim()}`);
    }
    job.setPhase('commitment', mapped ? 'file written by QEMU' : 'stream written; waiting for the pipeline to finish the file');
    const deadline = Date.now() + 120_000;
    while (!(await exists(t, written))) {
      if (Date.now() > deadline) throw new FerryException('EXEC_FAILED', `the save pipeline did not finish ${file} within 120 s`);
      await sleep(20);
    }
    const stat = await statSize(t, written);
    const sha256 = await sha256Of(t, written);
    const ram = last.ram as { transferred?: number } | undefined;
    const saveMs = Date.now() - t0;
    const meta: SavedStateMeta = {
      format: STATE_FORMAT, version: STATE_VERSION, vm: req.vm, hostId: host.id, file, createdAt: Date.now(),
      argv: record.argv, spec: record.spec as unknown as Record<string, unknown>, accel: record.accel, wasRunning, compression,
      sizeBytes: stat?.size ?? 0, sha256, saveMs, timeline: job.timelineFile,
      ...(qemuVersion ? { qemuVersion } : {}), ...(encryption ? { encryption } : {}), ...(ram?.transferred !== undefined ? { streamBytes: ram.transferred } : {}),
      ...(mapped ? { layout: 'mapped-ram' as const, multifdChannels: MAPPED_RAM_CHANNELS } : {}),
    };
    const mv = await t.exec(['mv', '-f', '--', written, file]);
    if (mv.code !== 0) throw new FerryException('IO_ERROR', `cannot rename ${written} to ${file}: ${mv.stderr.trim()}`);
    moved = true;
    await t.writeFile(sidecar, `${JSON.stringify(meta, null, 2)}\n`, 0o600);
    moved = false; // whole now: file and sidecar
    let runState: string;
    if (req.keepRunning) {
      if (wasRunning) await q.execute('cont');
      runState = wasRunning ? 'running' : 'paused';
      q.close();
    } else {
      q.close();
      await stopVm(t, runtimeDirOf(host), req.vm);
      runState = 'stopped';
    }
    job.setPhase('activation', req.keepRunning ? 'VM kept running' : 'VM stopped: its state is in the file');
    job.end('completed', undefined, { totalTimeMs: saveMs, ...(meta.streamBytes !== undefined ? { transferredBytes: meta.streamBytes } : {}) });
    return {
      id: job.id, op: 'save', hostId: host.id, vm: req.vm, file, timeline: job.timelineFile, tookMs: saveMs, sizeBytes: meta.sizeBytes,
      compression, runState, ...(meta.streamBytes !== undefined ? { streamBytes: meta.streamBytes } : {}), ...(encryption ? { encryption: encryption.kind } : {}),
      layout,
    };
  } catch (e) {
    // The VM stays as it was: resumed if it ran; no partial file under any name.
    if (!q.closed) {
      await q.execute('migrate_cancel').catch(stateLog.dropped('cancelling the save'));
      const st = await q.execute<{ running: boolean }>('query-status').catch(stateLog.dropped('query-status after a failed save'));
      if (wasRunning && st && !st.running) await q.execute('cont').catch(stateLog.dropped('resuming the VM after a failed save', 'error'));
      q.close();
    }
    await sleep(200); // the pipeline's last stage may still rename its file
    await tryRm(t, partial, written, ...(moved ? [file] : []));
    job.end('failed', toFerryError(e).message);
    throw e;
  }
}

/** Reads and checks a state file's sidecar, then its size and sha256. */
export async function checkState(t: HostTransport, hostId: string, file: string): Promise<SavedStateMeta> {
  const sidecar = sidecarOf(file);
  let text: string;
  try {
    text = (await t.readFile(sidecar)).toString('utf8');
  } catch {
    if (!(await exists(t, file))) throw new FerryException('NOT_FOUND', `no saved state ${file} on ${hostId}`, { file });
    throw new FerryException('STATE_CORRUPT', `${file} has no sidecar (${path.posix.basename(sidecar)}): Ferry cannot tell how to start it or whether it is whole`, { file });
  }
  let meta: SavedStateMeta;
  try {
    const parsed = SavedStateMetaSchema.safeParse(JSON.parse(text));
    if (!parsed.success) throw new Error(parsed.error.issues.map((i) => `${i.path.join('.')}: ${i.message}`).join('; '));
    meta = parsed.data;
  } catch (e) {
    throw new FerryException('STATE_CORRUPT', `the sidecar of ${file} is not valid: ${(e as Error).message}`, { file: sidecar });
  }
  const st = await statSize(t, file);
  if (!st) throw new FerryException('NOT_FOUND', `the state file ${file} is missing on ${hostId} (its sidecar is there)`, { file });
  if (st.size !== meta.sizeBytes) {
    throw new FerryException('STATE_CORRUPT', `${file} is ${st.size} bytes but was saved as ${meta.sizeBytes} bytes: ${st.size < meta.sizeBytes ? 'truncated' : 'it has grown'}; refusing to restore it`, { file, sizeBytes: st.size, expected: meta.sizeBytes });
  }
  const sha = await sha256Of(t, file);
  if (sha !== meta.sha256) {
    throw new FerryException('STATE_CORRUPT', `${file} does not match its sha256 (${sha.slice(0, 12)}… instead of ${meta.sha256.slice(0, 12)}…): the file is corrupted; refusing to restore it`, { file, sha256: sha, expected: meta.sha256 });
  }
  return meta;
}

/**
 * How far the restore pipeline has read `file`: the file position of the pipeline stage
 * (a child or grandchild of QEMU's exec: shell) holding it open. Arguments are positional
 * parameters of a fixed script, never interpolated.
 */
const POSITION_SCRIPT = 'for c in $(ps -o pid= --ppid "$1"); do for g in "$c" $(ps -o pid= --ppid "$c"); do for fd in /proc/"$g"/fd/*; do if [ "$(readlink "$fd")" = "$2" ]; then sed -n "s/^pos:[[:space:]]*//p" /proc/"$g"/fdinfo/"${fd##*/}"; exit 0; fi; done; done; done';

export async function readPosition(t: HostTransport, qemuPid: number, file: string): Promise<number | undefined> {
  const r = await t.exec(['sh', '-c', POSITION_SCRIPT, 'ferry-restore-position', String(qemuPid), file], { timeoutMs: 5000 });
  const n = Number(r.stdout.trim().split('\n')[0]);
  return r.stdout.trim() !== '' && Number.isFinite(n) ? n : undefined;
}

/** Starts the saved VM again from its file; on any failure nothing of it is left running. */
export async function restoreState(host: HostConfig, t: HostTransport, req: RestoreRequest, options: StateJobOptions): Promise<StateResult> {
  const file = resolveStatePath(host, req.file);
  const meta = await checkState(t, host.id, file);
  const name = req.name ?? meta.vm;
  const mapped = meta.layout === 'mapped-ram';
  const uri = mapped ? `file:${file}` : `exec:${restorePipeline(file, meta.compression, meta.encryption, req.identityFile)}`;
  await requireTools(t, host.id, encodeStages(meta.compression, meta.encryption));
  const files = vmFiles(runtimeDirOf(host), name);
  const runningPid = await readPid(t, files.pidFile);
  if (runningPid && (await processAlive(t, runningPid))) {
    throw new FerryException('ALREADY_EXISTS', `VM "${name}" is already running on ${host.id} (pid ${runningPid}): stop it or restore under another name`, { vm: name });
  }
  const spec = { ...(meta.spec as unknown as VmSpec) };
  // A state saved before Ferry recorded concrete machine types names an alias: it meant the
  // machine that alias stood for in the QEMU that saved it.
  const alias = machineTypeOfOption(spec.machine) ?? 'pc';
  const v = /^(\d+\.\d+)\./.exec(meta.qemuVersion ?? '')?.[1];
  if (v && (alias === 'pc' || alias === 'q35')) spec.machine = alias === 'pc' ? `pc-i440fx-${v}` : `pc-q35-${v}`;
  const job = new StateJob('restore', host.id, name, options);
  job.open(t.label, file, meta.argv, meta.qemuVersion, { compression: meta.compression, ...(meta.encryption ? { encryption: meta.encryption.kind } : {}) });
  job.setPhase('reservation');
  const t0 = Date.now();
  let q: QmpClient | undefined;
  let started = false;
  try {
    await launchVm(t, runtimeDirOf(host), { ...spec, name, accel: meta.accel, paused: false, extraArgs: withIncomingDefer(spec.extraArgs) }, host.qemu);
    started = true;
    q = await openVmQmp(t, files);
    if (mapped) {
      const f = await featuresOf(q);
      if (!f.capabilities.includes('mapped-ram')) throw new FerryException('UNSUPPORTED', `${file} is a mapped-ram state file; ${host.id}'s QEMU${f.version ? ` ${f.version}` : ''} cannot read one (QEMU 9.0+)`, { file });
    }
    await q.execute('migrate-set-capabilities', { capabilities: [{ capability: 'events', state: true }, ...(mapped ? [{ capability: 'mapped-ram', state: true }, { capability: 'multifd', state: true }] : [])] });
    if (mapped) await q.execute('migrate-set-parameters', { 'multifd-channels': meta.multifdChannels ?? MAPPED_RAM_CHANNELS });
    job.setPhase('setup');
    job.stopped = true; // the guest does not run while its state loads
    const qemuPid = await readPid(t, files.pidFile);
    await q.execute('migrate-incoming', { uri });
    const probe = async (): Promise<Partial<MigrationSample>> => {
      const pos = qemuPid ? await readPosition(t, qemuPid, file) : undefined;
      return pos === undefined ? {} : { transferredBytes: pos, totalBytes: meta.sizeBytes, remainingBytes: Math.max(0, meta.sizeBytes - pos) };
    };
    const last = await job.run(q, req.sampleIntervalMs ?? 100, probe);
    if (last.status !== 'completed') {
      const why = typeof last['error-desc'] === 'string' ? last['error-desc'] : `incoming migration ${String(last.status)}`;
      throw new FerryException('STATE_LOAD_FAILED', `QEMU could not load ${file}: ${why}`, { file });
    }
    // QEMU leaves 'inmigrate' a moment after the stream ends.
    let st = await q.execute<{ status: string; running: boolean }>('query-status');
    const deadline = Date.now() + 10_000;
    while (st.status === 'inmigrate' && Date.now() < deadline) {
      await sleep(20);
      st = await q.execute<{ status: string; running: boolean }>('query-status');
    }
    if (st.status === 'inmigrate') throw new FerryException('STATE_LOAD_FAILED', `QEMU read ${file} but did not leave the incoming state`);
    if (meta.wasRunning && !st.running) await q.execute('cont');
    const runState = (await q.execute<{ status: string }>('query-status')).status;
    q.close();
    const tookMs = Date.now() - t0;
    job.setPhase('activation', `VM ${runState}`);
    job.end('completed', undefined, { totalTimeMs: tookMs });
    return {
      id: job.id, op: 'restore', hostId: host.id, vm: name, file, timeline: job.timelineFile, tookMs, sizeBytes: meta.sizeBytes, compression: meta.compression, runState, layout: meta.layout ?? 'stream',
      ...(meta.streamBytes !== undefined ? { streamBytes: meta.streamBytes } : {}), ...(meta.encryption ? { encryption: meta.encryption.kind } : {}),
    };
  } catch (e) {
    q?.close();
    if (started) await stopVm(t, runtimeDirOf(host), name, { timeoutMs: 2000 }).catch(stateLog.dropped(`stopping the QEMU of a failed restore (${name})`, 'error'));
    const fe = e instanceof FerryException && e.code !== 'QMP_DISCONNECTED' && e.code !== 'QMP_GREETING'
      ? e
      : new FerryException('STATE_LOAD_FAILED', `QEMU could not load ${file}: ${toFerryError(e).message}`, { file });
    job.end('failed', fe.message);
    throw fe;
  }
}

/** The saved states in a host's states dir (by their sidecars), newest first. */
export async function listStates(host: HostConfig, t: HostTransport): Promise<SavedStateEntry[]> {
  const dir = statesDirOf(host);
  const r = await t.exec(['find', dir, '-mindepth', '1', '-maxdepth', '1', '-type', 'f', '-name', `*${SIDECAR_SUFFIX}`]);
  if (r.code !== 0) return []; // no states dir yet
  const out: SavedStateEntry[] = [];
  for (const sidecar of r.stdout.split('\n').filter(Boolean)) {
    const file = sidecar.slice(0, -SIDECAR_SUFFIX.length);
    try {
      const meta = SavedStateMetaSchema.parse(JSON.parse((await t.readFile(sidecar)).toString('utf8')));
      const st = await statSize(t, file);
      out.push({
        file, vm: meta.vm, sizeBytes: st?.size ?? 0, createdAt: meta.createdAt, compression: meta.compression,
        complete: st?.size === meta.sizeBytes, ...(meta.encryption ? { encryption: meta.encryption.kind } : {}),
      });
    } catch {
      // not a sidecar Ferry wrote
    }
  }
  return out.sort((a, b) => b.createdAt - a.createdAt);
}
