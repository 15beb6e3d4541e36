/**
 * Host evacuation: move every VM off a host to one or more others, at most K migrations at
 * a time, optionally by a deadline (the seeds' "this host goes down in 5 minutes"). One
 * VM's failure does not stop the others.
 */
import { randomBytes } from 'node:crypto';
import { FerryException, toFerryError } from '../../../shared/errors';
import type { MigrationFinal, MigrationPlanInput } from '../../../shared/model/migration';
import type { EngineHosts, Migration, MigrationEngine } from './migration-engine';

export interface EvacuationRequest {
  from: string;
  to: string[];
  parallel?: number;
  /** Everything should be off the host this many ms after the start. */
  deadlineMs?: number;
  /** Settings applied to every VM's plan (bandwidth, downtime, mode...). */
  defaults?: Omit<MigrationPlanInput, 'vm' | 'from' | 'to'>;
}

export interface EvacuationItem {
  vm: string;
  to: string;
  state: 'queued' | 'running' | 'completed' | 'failed' | 'cancelled';
  migrationId?: string;
  reason?: string;
  downtimeMs?: number;
}

export interface EvacuationSummary {
  id: string;
  from: string;
  startedAt: number;
  parallel: number;
  deadlineMs?: number;
  items: EvacuationItem[];
  done: boolean;
}

export class Evacuation {
  readonly id = `evac-${Date.now().toString(36)}-${randomBytes(2).toString('hex')}`;
  readonly startedAt = Date.now();
  readonly items: EvacuationItem[] = [];
  private readonly listeners = new Set<(s: EvacuationSummary) => void>();
  private finished: Promise<EvacuationSummary> | undefined;
  private isDone = false;

  constructor(private readonly req: EvacuationRequest & { parallel: number }, private readonly engine: MigrationEngine) {}

  onProgress(l: (s: EvacuationSummary) => void): () => void {
    this.listeners.add(l);
    return () => this.listeners.delete(l);
  }

  summary(): EvacuationSummary {
    const s: EvacuationSummary = { id: this.id, from: this.req.from, startedAt: this.startedAt, parallel: this.req.parallel, items: this.items.map((i) => ({ ...i })), done: this.isDone };
    if (this.req.deadlineMs !== undefined) s.deadlineMs = this.req.deadlineMs;
    return s;
  }

  private emit(): void {
    const s = this.summary();
    for (const l of [...this.listeners]) l(s);
  }

  whenDone(): Promise<EvacuationSummary> {
    if (!this.finished) throw new FerryException('INTERNAL', 'evacuation not started');
    return this.finished;
  }

  start(vms: string[]): void {
    vms.forEach((vm, i) => this.items.push({ vm, to: this.req.to[i % this.req.to.length]!, state: 'queued' }));
    const queue = [...this.items];
    const worker = async () => {
      for (let item = queue.shift(); item; item = queue.shift()) await this.runOne(item);
    };
    this.finished = Promise.all(Array.from({ length: Math.min(this.req.parallel, Math.max(1, queue.length)) }, worker)).then(() => {
      this.isDone = true;
      this.emit();
      return this.summary();
    });
    this.emit();
  }

  private async runOne(item: EvacuationItem): Promise<void> {
    item.state = 'running';
    this.emit();
    const plan: MigrationPlanInput = { ...(this.req.defaults ?? {}), vm: item.vm, from: this.req.from, to: item.to };
    if (this.req.deadlineMs !== undefined && !plan.policy) {
      const left = this.req.deadlineMs - (Date.now() - this.startedAt);
      plan.policy = { name: 'deadline', deadlineMs: Math.max(1000, left), ceilingDowntimeMs: 2000, allowPostcopy: plan.mode !== undefined && plan.mode !== 'precopy' };
    }
    let m: Migration;
    try {
      m = await this.engine.start(plan);
    } catch (e) {
      item.state = 'failed';
      item.reason = toFerryError(e).message;
      this.emit();
      return;
    }
    item.migrationId = m.id;
    this.emit();
    const final: MigrationFinal = await m.whenDone();
    item.state = final.outcome;
    if (final.reason) item.reason = final.reason;
    if (final.downtimeMs !== undefined) item.downtimeMs = final.downtimeMs;
    if (final.verify && !final.verify.ok) {
      item.state = 'failed';
      item.reason = `guest memory check failed (${final.verify.bad} bad, ${final.verify.stale} stale pages)`;
    }
    this.emit();
  }
}

export async function startEvacuation(engine: MigrationEngine, hosts: EngineHosts, req: EvacuationRequest): Promise<Evacuation> {
  if (req.to.length === 0) throw new FerryException('INVALID_REQUEST', 'evacuation needs at least one destination host');
  if (req.to.includes(req.from)) throw new FerryException('INVALID_REQUEST', `cannot evacuate ${req.from} onto itself`);
  const parallel = req.parallel ?? 1;
  if (!Number.isInteger(parallel) || parallel < 1 || parallel > 16) throw new FerryException('INVALID_REQUEST', `parallel must be 1..16, got ${req.parallel}`);
  await Promise.all(req.to.map((id) => hosts.host(id)));
  const vms = (await engine.listVms(req.from)).filter((v) => v.managed && v.runState !== 'stopped');
  const evac = new Evacuation({ ...req, parallel }, engine);
  evac.start(vms.map((v) => v.name));
  return evac;
}
