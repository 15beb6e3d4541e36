/**
 * The live `/metrics` of a console: what the console service's migration events say, kept
 * per migration and rendered on each scrape (shared/report/metrics.ts formats it). A running
 * migration exposes its latest sample; an ended one keeps only its lifecycle figures (start,
 * end, succeeded/failed, downtime, phase), for the last KEEP_ENDED migrations.
 */
import type { EventChannel, EventPayload, MigrationSummaryPayload } from '../../../shared/contract';
import type { MigrationFinal, MigrationPhase, MigrationSample } from '../../../shared/model/migration';
import { TERMINAL_PHASES } from '../../../shared/model/migration';
import { prometheusText } from '../../../shared/report/metrics';
import type { MigrationMetricsInput } from '../../../shared/report/metrics';

/** What the collector needs of the console service: its events, and the migrations it already has. */
export interface MetricsSource {
  on<C extends EventChannel>(channel: C, listener: (payload: EventPayload<C>) => void): () => void;
  engine: { list(): MigrationSummaryPayload[] | readonly unknown[] };
}

export const KEEP_ENDED = 100;

interface State extends MigrationMetricsInput {
  phases: MigrationPhase[];
}

export class MigrationMetrics {
  private readonly migrations = new Map<string, State>();
  private readonly offs: (() => void)[];

  constructor(source: MetricsSource, private readonly keepEnded = KEEP_ENDED) {
    for (const s of source.engine.list() as MigrationSummaryPayload[]) this.started(s);
    this.offs = [
      source.on('migration:started', (s) => this.started(s)),
      source.on('migration:sample', ({ id, sample }) => {
        const m = this.migrations.get(id);
        if (!m || m.final) return;
        m.sample = sample as MigrationSample;
        this.enter(m, m.sample.phase);
      }),
      source.on('migration:phase', ({ id, phase }) => {
        const m = this.migrations.get(id);
        if (m) this.enter(m, phase);
      }),
      source.on('migration:ended', ({ id, final }) => {
        const m = this.migrations.get(id);
        if (!m) return;
        this.end(m, final as MigrationFinal, Date.now());
      }),
    ];
  }

  private started(s: MigrationSummaryPayload): void {
    const plan = s.plan as { vm?: string; from?: string; to?: string; downtimeLimitMs?: number };
    const m: State = {
      id: s.id, vm: plan.vm ?? '?', source: plan.from ?? '?', destination: plan.to ?? '', startedAt: s.startedAt,
      phase: s.phase, phases: [s.phase],
      ...(typeof plan.downtimeLimitMs === 'number' ? { downtimeLimitMs: plan.downtimeLimitMs } : {}),
      ...(s.last ? { sample: s.last as MigrationSample } : {}),
    };
    this.migrations.set(s.id, m);
    if (s.final) this.end(m, s.final as MigrationFinal, s.last?.t ?? s.startedAt);
  }

  private enter(m: State, phase: MigrationPhase): void {
    // After the end record the phase is the outcome: a late sample cannot take it back.
    if (m.final) return;
    m.phase = phase;
    if (!m.phases.includes(phase)) m.phases.push(phase);
  }

  private end(m: State, final: MigrationFinal, at: number): void {
    this.enter(m, TERMINAL_PHASES.includes(final.outcome) ? final.outcome : m.phase);
    m.final = final;
    m.endedAt = at;
    delete m.sample;
    const ended = [...this.migrations.values()].filter((x) => x.final).sort((a, b) => (a.endedAt ?? 0) - (b.endedAt ?? 0));
    for (const x of ended.slice(0, Math.max(0, ended.length - this.keepEnded))) this.migrations.delete(x.id);
  }

  /** The Prometheus text of every migration known now. */
  render(): string {
    const all = [...this.migrations.values()];
    return prometheusText(all, all.filter((m) => !m.final).length);
  }

  dispose(): void {
    for (const off of this.offs) off();
  }
}
