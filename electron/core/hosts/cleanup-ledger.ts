/**
 * QEMUs Ferry must still stop: a destination of a failed or cancelled migration that could
 * not be reached at the time (its host dropped with the link, Ferry was restarted). Each is
 * written to `<configDir>/pending-cleanups.json` and stopped by pid as soon as its host is
 * reachable again, so a failed migration never leaves a QEMU waiting in `inmigrate`.
 */
import { existsSync, readFileSync } from 'node:fs';
import path from 'node:path';
import type { HostTransport } from '../transport/host-transport';
import { writeFileAtomic } from '../transport/local-transport';
import { killVmByPid } from './vm-launcher';
import { rootLog } from '../log';

export interface PendingCleanup {
  hostId: string;
  vm: string;
  runtimeDir: string;
  /** Why it is there (the failure that left it). */
  reason: string;
  migrationId?: string;
  since: number;
}

const log = rootLog.child('cleanup');

export class CleanupLedger {
  private items: PendingCleanup[];
  private running = new Map<string, Promise<string[]>>();

  /** `file` undefined: kept in memory only. */
  constructor(private readonly file: string | undefined) {
    this.items = file ? load(file) : [];
  }

  list(hostId?: string): PendingCleanup[] {
    return this.items.filter((c) => hostId === undefined || c.hostId === hostId);
  }

  async add(c: PendingCleanup): Promise<void> {
    this.items = [...this.items.filter((x) => !(x.hostId === c.hostId && x.vm === c.vm && x.runtimeDir === c.runtimeDir)), c];
    log.warn(`${c.hostId}/${c.vm}: will stop it when ${c.hostId} is reachable: ${c.reason}`, { migration: c.migrationId });
    await this.save();
  }

  /**
   * Stops every pending QEMU of `hostId` by pid (only a process whose command line still
   * names its runtime dir: a reused pid is left alone). Returns the VMs stopped; what still
   * fails stays pending.
   */
  runFor(hostId: string, transport: HostTransport): Promise<string[]> {
    const inflight = this.running.get(hostId);
    if (inflight) return inflight;
    const p = this.doRun(hostId, transport).finally(() => this.running.delete(hostId));
    this.running.set(hostId, p);
    return p;
  }

  private async doRun(hostId: string, transport: HostTransport): Promise<string[]> {
    const mine = this.list(hostId);
    if (mine.length === 0) return [];
    const done: PendingCleanup[] = [];
    for (const c of mine) {
      try {
        const r = await killVmByPid(transport, c.runtimeDir, c.vm);
        log.info(`${hostId}/${c.vm}: ${r.wasRunning ? 'stopped the leftover QEMU' : 'already gone'} (${c.reason})`, { migration: c.migrationId });
        done.push(c);
      } catch (e) {
        log.warn(`${hostId}/${c.vm}: still cannot stop it: ${e instanceof Error ? e.message : String(e)}`);
      }
    }
    if (done.length) {
      this.items = this.items.filter((x) => !done.includes(x));
      await this.save();
    }
    return done.map((c) => c.vm);
  }

  private async save(): Promise<void> {
    if (!this.file) return;
    await writeFileAtomic(this.file, `${JSON.stringify({ version: 1, pending: this.items }, null, 2)}\n`, 0o600).catch(log.dropped(`writing ${this.file}`, 'error'));
  }
}

function load(file: string): PendingCleanup[] {
  if (!existsSync(file)) return [];
  try {
    const j = JSON.parse(readFileSync(file, 'utf8')) as { version?: number; pending?: PendingCleanup[] };
    return j.version === 1 && Array.isArray(j.pending) ? j.pending.filter((c) => typeof c.hostId === 'string' && typeof c.vm === 'string' && typeof c.runtimeDir === 'string') : [];
  } catch (e) {
    log.error(`${path.basename(file)} is unreadable, starting with no pending cleanups: ${e instanceof Error ? e.message : String(e)}`);
    return [];
  }
}
