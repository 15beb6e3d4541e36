import { useMemo, useState } from 'react';
import { useConsole } from '../store/console-store';
import type { MigrationEntry } from '../store/console-store';
import { TimeChart } from '../charts/time-chart';
import type { ChartRow, PhaseSpan } from '../charts/time-chart';
import { formatBytes, formatMs, formatRate } from '../../shared/analysis/units';
import { BeyondPanel } from './beyond-views';
import { TERMINAL_PHASES } from '../../shared/model/migration';
import type { MigrationPhase, MigrationSample } from '../../shared/model/migration';

const mb = (v: number) => `${(v / 1e6).toFixed(v < 1e7 ? 1 : 0)} MB`;
const mbs = (v: number) => `${(v / 1e6).toFixed(v < 1e7 ? 1 : 0)} MB/s`;
const ms = (v: number) => `${Math.round(v)} ms`;

export function rowsOf(samples: readonly MigrationSample[], startedAt: number): ChartRow[] {
  return samples.map((s) => {
    const r: ChartRow = { t: (s.t - startedAt) / 1000 };
    if (s.dirtyRate !== undefined) r.dirty = s.dirtyRate;
    if (s.transferRate !== undefined) r.xfer = s.transferRate;
    if (s.remainingBytes !== undefined) r.remaining = s.remainingBytes;
    if (s.transferredBytes !== undefined) r.transferred = s.transferredBytes;
    const fp = s.projection?.switchoverDowntimeMs ?? s.projection?.downtimeMs;
    if (fp !== undefined) r.ferry = Math.min(fp, 60_000);
    if (s.expectedDowntimeMs !== undefined) r.qemu = s.expectedDowntimeMs;
    if (s.guest) r.stall = s.guest.stallMs;
    if (s.postcopyRequests !== undefined) r.requests = s.postcopyRequests;
    if (s.cpuThrottlePct !== undefined) r.throttle = s.cpuThrottlePct;
    return r;
  });
}

export function phaseSpans(entry: MigrationEntry, now: number): PhaseSpan[] {
  const start = entry.summary.startedAt;
  return entry.phases.map((p, i) => ({
    phase: p.phase,
    from: (p.t - start) / 1000,
    to: ((entry.phases[i + 1]?.t ?? now) - start) / 1000,
  }));
}

export function passStarts(samples: readonly MigrationSample[], startedAt: number): number[] {
  const out: number[] = [];
  for (let i = 1; i < samples.length; i++) {
    const a = samples[i - 1]!.pass;
    const b = samples[i]!.pass;
    if (a !== undefined && b !== undefined && b > a) out.push((samples[i]!.t - startedAt) / 1000);
  }
  return out;
}

const VERDICT_WORDS = { converging: 'Converging', slow: 'Converging slowly', never: 'Not converging: dirtying outpaces the transfer', unknown: 'Measuring…' } as const;

interface ControlDef {
  label: string;
  key: string;
  enabled: (phase: MigrationPhase, postcopyPlanned: boolean) => string | true;
}

const CONTROLS: ControlDef[] = [
  { label: 'Cancel', key: 'cancel', enabled: (p) => (['setup', 'precopy', 'stop-and-copy'].includes(p) ? true : p.startsWith('postcopy') ? 'the guest already runs on the destination' : 'nothing to cancel') },
  { label: 'Stop VM', key: 'stop-vm', enabled: (p) => (['setup', 'precopy'].includes(p) ? true : 'only during precopy') },
  { label: 'Switch to postcopy', key: 'postcopy', enabled: (p, pc) => (!pc ? 'postcopy was not enabled in the plan' : ['setup', 'precopy'].includes(p) ? true : 'only during precopy') },
  { label: 'Pause postcopy', key: 'pause-postcopy', enabled: (p) => (p === 'postcopy' ? true : 'only during postcopy') },
  { label: 'Recover', key: 'recover', enabled: (p) => (p === 'postcopy-paused' ? true : 'only when postcopy is paused') },
];

export function MigrationView({ id }: { id: string }) {
  const entry = useConsole((s) => s.migrations[id]);
  const control = useConsole((s) => s.control);
  const [bw, setBw] = useState('');
  const [dt, setDt] = useState('');
  const [confirm, setConfirm] = useState<string>();
  const rows = useMemo(() => (entry ? rowsOf(entry.samples, entry.summary.startedAt) : []), [entry?.samples, entry?.summary.startedAt]);
  const last = entry?.samples.at(-1);
  const now = last?.t ?? Date.now();
  const phases = useMemo(() => (entry ? phaseSpans(entry, now) : []), [entry?.phases, now]);
  const passes = useMemo(() => (entry ? passStarts(entry.samples, entry.summary.startedAt) : []), [entry?.samples]);
  if (!entry) return null;
  const plan = entry.summary.plan as { vm: string; from: string; to: string; mode?: string; downtimeLimitMs?: number; maxBandwidth?: number };
  const phase = entry.summary.phase;
  const ended = TERMINAL_PHASES.includes(phase);
  const pct = last?.totalBytes && last.remainingBytes !== undefined ? Math.max(0, Math.min(100, (1 - last.remainingBytes / last.totalBytes) * 100)) : 0;
  const pr = [...entry.samples].reverse().find((s) => s.projection)?.projection;
  const limit = plan.downtimeLimitMs ?? 300;
  const hasGuest = entry.samples.some((s) => s.guest);
  const pol = (plan as { policy?: { name: string; allowPostcopy?: boolean } }).policy;
  const postcopyPlanned = (plan.mode !== undefined && plan.mode !== 'precopy') || pol?.name === 'postcopy-when-never' || (pol?.name === 'deadline' && pol.allowPostcopy === true);
  const final = entry.final;
  const run = (key: string) => {
    if (key === 'postcopy' && confirm !== key) {
      setConfirm(key);
      return;
    }
    setConfirm(undefined);
    void control(id, { action: key as 'cancel' });
  };
  return (
    <section className="migration" aria-label={`Migration of ${plan.vm}`} data-phase={phase}>
      <header className="migration-head">
        <h2>
          {plan.vm}: {plan.from} → {plan.to}
        </h2>
        <span className={`phase-badge phase-${phase}`} data-testid="phase">{phase}</span>
      </header>
      <div className="progress" role="progressbar" aria-valuenow={Math.round(ended && phase === 'completed' ? 100 : pct)} aria-valuemin={0} aria-valuemax={100} aria-label="migration progress">
        <div className="bar" style={{ width: `${ended && phase === 'completed' ? 100 : pct}%` }} />
        <span className="progress-text" data-testid="progress-text">
          {ended
            ? final
              ? `${final.outcome}${final.reason ? `: ${final.reason}` : ''}`
              : phase
            : `${pct.toFixed(0)}% · pass ${last?.pass ?? '-'} · ${pr ? VERDICT_WORDS[pr.verdict] : VERDICT_WORDS.unknown}${pr?.etaMs !== undefined ? ` · done in ~${formatMs(pr.etaMs)}` : ''}${pr?.drainMs !== undefined ? ` · drains in ~${formatMs(pr.drainMs)}` : ''}`}
        </span>
      </div>
      {final && (
        <dl className="figures" data-testid="final-figures">
          <div><dt>Downtime</dt><dd data-testid="downtime">{formatMs(final.downtimeMs)}</dd></div>
          <div><dt>Guest saw</dt><dd>{formatMs(final.guestDowntimeMs)}</dd></div>
          <div><dt>Total</dt><dd>{formatMs(final.totalTimeMs)}</dd></div>
          <div><dt>Passes</dt><dd>{final.passes ?? '?'}</dd></div>
          <div><dt>Sent</dt><dd>{formatBytes(final.transferredBytes)}</dd></div>
          {final.postcopyRequests ? <div><dt>Page requests</dt><dd>{final.postcopyRequests}</dd></div> : null}
          {final.verify && <div><dt>Guest memory</dt><dd className={final.verify.ok ? 'ok' : 'bad'}>{final.verify.ok ? 'verified' : `${final.verify.bad + final.verify.stale} bad pages`}</dd></div>}
        </dl>
      )}
      {!ended && (
        <dl className="figures live">
          <div><dt>Dirty</dt><dd>{formatRate(pr?.dirtyRate ?? last?.dirtyRate)}</dd></div>
          <div><dt>Transfer</dt><dd>{formatRate(pr?.transferRate ?? last?.transferRate)}</dd></div>
          <div><dt>Remaining</dt><dd>{formatBytes(last?.remainingBytes)}</dd></div>
          <div><dt>Downtime at switchover (Ferry)</dt><dd>{formatMs(pr?.switchoverDowntimeMs ?? pr?.downtimeMs)}</dd></div>
          <div><dt>QEMU expects</dt><dd>{formatMs(last?.expectedDowntimeMs)}</dd></div>
          {last?.cpuThrottlePct ? <div><dt>Throttle</dt><dd>{last.cpuThrottlePct}%</dd></div> : null}
          {last?.xbzrle ? <div><dt>XBZRLE misses</dt><dd>{last.xbzrle.cacheMiss}</dd></div> : null}
          {last?.postcopyRequests ? <div><dt>Page requests</dt><dd>{last.postcopyRequests}</dd></div> : null}
        </dl>
      )}
      <BeyondPanel entry={entry} />
      <div className="controls" role="group" aria-label="migration controls">
        {CONTROLS.map((c) => {
          const ok = ended ? 'the migration has ended' : c.enabled(phase, postcopyPlanned);
          return (
            <button key={c.key} type="button" disabled={ok !== true} title={ok === true ? c.label : `Not now: ${ok}`} onClick={() => run(c.key)} className={c.key === 'cancel' ? 'danger' : ''}>
              {confirm === c.key ? 'Confirm: the VM cannot go back' : c.label}
            </button>
          );
        })}
        <label className="inline">
          Bandwidth MB/s
          <input type="number" min={1} value={bw} placeholder={plan.maxBandwidth ? String(plan.maxBandwidth / 1e6) : 'max'} onChange={(e) => setBw(e.target.value)} disabled={ended} aria-label="bandwidth in MB/s" />
          <button type="button" disabled={ended || !(Number(bw) > 0)} onClick={() => void control(id, { action: 'set-bandwidth', bytesPerSecond: Number(bw) * 1e6 })}>Set</button>
        </label>
        <label className="inline">
          Downtime limit ms
          <input type="number" min={1} value={dt} placeholder={String(limit)} onChange={(e) => setDt(e.target.value)} disabled={ended || !['setup', 'precopy'].includes(phase)} aria-label="downtime limit in ms" />
          <button type="button" disabled={ended || !['setup', 'precopy'].includes(phase) || !(Number(dt) >= 1)} onClick={() => void control(id, { action: 'set-downtime', ms: Math.round(Number(dt)) })}>Set</button>
        </label>
      </div>
      <div className="charts">
        <TimeChart title="Dirty rate vs transfer rate" rows={rows} series={[{ key: 'dirty', label: 'dirty', color: '#ef4444' }, { key: 'xfer', label: 'transfer', color: '#2563eb' }]} format={mbs} phases={phases} passes={passes} />
        <TimeChart title="Memory" rows={rows} series={[{ key: 'remaining', label: 'remaining', color: '#f59e0b' }, { key: 'transferred', label: 'transferred', color: '#10b981' }]} format={mb} phases={phases} passes={passes} />
        <TimeChart
          title="Projected downtime: Ferry vs QEMU"
          rows={rows}
          series={[{ key: 'ferry', label: 'Ferry', color: '#7c3aed' }, { key: 'qemu', label: 'QEMU expected', color: '#64748b', dashed: true }]}
          format={ms}
          phases={phases}
          passes={passes}
          yMax={Math.ceil(Math.max(limit * 3, ...rows.map((r) => (r.qemu ?? 0) * 1.2), (final?.downtimeMs ?? 0) * 1.5) / 50) * 50}
          marks={[{ y: limit, label: `limit ${limit} ms`, color: '#dc2626' }, ...(final?.downtimeMs !== undefined ? [{ y: final.downtimeMs, label: `actual ${final.downtimeMs} ms`, color: '#059669' }] : [])]}
        />
        {hasGuest && <TimeChart title="Guest: longest stall per heartbeat" rows={rows} series={[{ key: 'stall', label: 'stall', color: '#0891b2' }]} format={ms} phases={phases} passes={passes} />}
      </div>
      <ol className="log" aria-label="event log">
        {entry.log.slice(-40).map((l, i) => (
          <li key={i} className={`log-${l.kind}`}>
            <time>{new Date(l.t).toLocaleTimeString()}</time> {l.text}
          </li>
        ))}
      </ol>
    </section>
  );
}
