import { useState } from 'react';
import { useConsole } from '../store/console-store';
import { EventLog, FinalFigures, MigrationCharts } from './migration-picture';
import { fileName } from '../export/exports';
import { formatBytes, formatMs, formatRate } from '../../shared/analysis/units';
import { BeyondPanel } from './beyond-views';
import { TERMINAL_PHASES } from '../../shared/model/migration';
import type { MigrationPhase } from '../../shared/model/migration';
import type { MigrationControlAction } from '../../shared/contract';
import { findLast } from '../../shared/model/ring';

const VERDICT_WORDS = { converging: 'Converging', slow: 'Converging slowly', never: 'Not converging: dirtying outpaces the transfer', unknown: 'Measuring…' } as const;

interface ControlDef {
  label: string;
  key: Exclude<MigrationControlAction, 'set-bandwidth' | 'set-downtime'>;
  enabled: (phase: MigrationPhase, postcopyPlanned: boolean) => string | true;
  /** Shown only for plans it means something to. */
  planned?: (plan: { pauseBeforeSwitchover?: boolean }) => boolean;
}

/** The buttons; a migration shows those its driver lists in `summary.controls` (and no others). */
const CONTROLS: ControlDef[] = [
  { label: 'Cancel', key: 'cancel', enabled: (p) => (['storage-copy', 'setup', 'precopy', 'stop-and-copy'].includes(p) ? true : p.startsWith('postcopy') ? 'the guest already runs on the destination' : 'nothing to cancel') },
  { label: 'Stop VM', key: 'stop-vm', enabled: (p) => (['setup', 'precopy'].includes(p) ? true : 'only during precopy') },
  { label: 'Switch to postcopy', key: 'postcopy', enabled: (p, pc) => (!pc ? 'postcopy was not enabled in the plan' : ['setup', 'precopy'].includes(p) ? true : 'only during precopy') },
  { label: 'Pause postcopy', key: 'pause-postcopy', enabled: (p) => (p === 'postcopy' ? true : 'only during postcopy') },
  { label: 'Recover', key: 'recover', enabled: (p) => (p === 'postcopy-paused' ? true : 'only when postcopy is paused') },
  { label: 'Continue', key: 'continue', enabled: (p) => (p === 'stop-and-copy' ? true : 'only once paused before switchover'), planned: (plan) => plan.pauseBeforeSwitchover === true },
];

export function MigrationView({ id }: { id: string }) {
  const entry = useConsole((s) => s.migrations[id]);
  const control = useConsole((s) => s.control);
  const [bw, setBw] = useState('');
  const [dt, setDt] = useState('');
  const [confirm, setConfirm] = useState<string>();
  const openRecorded = useConsole((s) => s.openRecorded);
  const last = entry?.samples.at(-1);
  if (!entry) return null;
  const plan = entry.summary.plan as { vm: string; from: string; to: string; mode?: string; downtimeLimitMs?: number; maxBandwidth?: number; pauseBeforeSwitchover?: boolean };
  const offered = new Set(entry.summary.controls ?? []);
  const buttons = CONTROLS.filter((c) => offered.has(c.key) && (c.planned?.(plan) ?? true));
  const phase = entry.summary.phase;
  const ended = TERMINAL_PHASES.includes(phase);
  const pct = last?.totalBytes && last.remainingBytes !== undefined ? Math.max(0, Math.min(100, (1 - last.remainingBytes / last.totalBytes) * 100)) : 0;
  const pr = findLast(entry.samples, (s) => s.projection !== undefined)?.projection;
  const limit = plan.downtimeLimitMs ?? 300;
  const pol = (plan as { policy?: { name: string; allowPostcopy?: boolean } }).policy;
  const postcopyPlanned = (plan.mode !== undefined && plan.mode !== 'precopy') || pol?.name === 'postcopy-when-never' || (pol?.name === 'deadline' && pol.allowPostcopy === true);
  const final = entry.final;
  const run = (key: string) => {
    if (key === 'postcopy' && confirm !== key) {
      setConfirm(key);
      return;
    }
    setConfirm(undefined);
    void control(id, { action: key as ControlDef['key'] });
  };
  return (
    <section className="migration" aria-label={`Migration of ${plan.vm}`} data-phase={phase}>
      <header className="migration-head">
        <h2>
          {plan.vm}: {plan.from} → {plan.to}
        </h2>
        <span className={`phase-badge phase-${phase}`} data-testid="phase">{phase}</span>
        {ended && entry.summary.timeline && (
          <button type="button" className="small" onClick={() => void openRecorded(fileName(entry.summary.timeline))} title="Open this migration's recorded timeline: scrub, zoom, export">
            Open timeline
          </button>
        )}
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
      {final && <FinalFigures final={final} />}
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
      {offered.size === 0 && !ended && <p className="muted small" data-testid="watch-only">Watching: Ferry issues no control to this migration.</p>}
      {offered.size > 0 && <div className="controls" role="group" aria-label="migration controls">
        {buttons.map((c) => {
          const ok = ended ? 'the migration has ended' : c.enabled(phase, postcopyPlanned);
          return (
            <button key={c.key} type="button" disabled={ok !== true} title={ok === true ? c.label : `Not now: ${ok}`} onClick={() => run(c.key)} className={c.key === 'cancel' ? 'danger' : ''}>
              {confirm === c.key ? 'Confirm: the VM cannot go back' : c.label}
            </button>
          );
        })}
        {offered.has('set-bandwidth') && <label className="inline">
          Bandwidth MB/s
          <input type="number" min={1} value={bw} placeholder={plan.maxBandwidth ? String(plan.maxBandwidth / 1e6) : 'max'} onChange={(e) => setBw(e.target.value)} disabled={ended} aria-label="bandwidth in MB/s" />
          <button type="button" disabled={ended || !(Number(bw) > 0)} onClick={() => void control(id, { action: 'set-bandwidth', bytesPerSecond: Number(bw) * 1e6 })}>Set</button>
        </label>}
        {offered.has('set-downtime') && <label className="inline">
          Downtime limit ms
          <input type="number" min={1} value={dt} placeholder={String(limit)} onChange={(e) => setDt(e.target.value)} disabled={ended || !['setup', 'precopy'].includes(phase)} aria-label="downtime limit in ms" />
          <button type="button" disabled={ended || !['setup', 'precopy'].includes(phase) || !(Number(dt) >= 1)} onClick={() => void control(id, { action: 'set-downtime', ms: Math.round(Number(dt)) })}>Set</button>
        </label>}
      </div>}
      <MigrationCharts entry={entry} />
      <EventLog log={entry.log} />
    </section>
  );
}
