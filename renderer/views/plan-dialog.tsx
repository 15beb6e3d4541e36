import { useEffect, useState } from 'react';
import { useConsole } from '../store/console-store';
import type { MigrationPlanInput } from '../../shared/model/migration';
import { NO_BEYOND, PlanBeyondOptions, beyondPlanFields } from './beyond-views';

const ICON = { pass: '✓', warn: '!', fail: '✗' } as const;

export function PlanDialog() {
  const plan = useConsole((s) => s.plan);
  const close = useConsole((s) => s.closePlan);
  const start = useConsole((s) => s.start);
  const [mode, setMode] = useState<'precopy' | 'postcopy' | 'postcopy-after'>('precopy');
  const [after, setAfter] = useState('3');
  const [bw, setBw] = useState('');
  const [dt, setDt] = useState('300');
  const [autoConverge, setAutoConverge] = useState(false);
  const [xbzrle, setXbzrle] = useState(false);
  const [multifd, setMultifd] = useState('');
  const [busy, setBusy] = useState(false);
  const [policy, setPolicy] = useState<'manual' | 'postcopy-when-never' | 'downtime-steps' | 'dynamic-rate' | 'deadline'>('manual');
  const [deadline, setDeadline] = useState('60');
  const [beyond, setBeyond] = useState(NO_BEYOND);
  const [temporary, setTemporary] = useState(false);
  const hosts = useConsole((s) => s.hosts);
  const beyondFields = beyondPlanFields(beyond);
  useEffect(() => {
    const onKey = (e: KeyboardEvent) => e.key === 'Escape' && close();
    window.addEventListener('keydown', onKey);
    return () => window.removeEventListener('keydown', onKey);
  }, [close]);
  if (!plan) return null;
  const libvirt = hosts.find((h) => h.config.id === plan.from)?.config.libvirt !== undefined;
  const failed = plan.preflight && !plan.preflight.ok;
  const bwNum = bw.trim() === '' ? undefined : Number(bw);
  const bad = (bwNum !== undefined && !(bwNum > 0) && 'bandwidth must be a positive number of MB/s') || (!(Number(dt) >= 1) && 'the downtime limit must be at least 1 ms') || (mode === 'postcopy-after' && !(Number(after) >= 1) && 'postcopy after N passes needs N >= 1') || (policy === 'deadline' && !(Number(deadline) >= 1) && 'the deadline must be at least 1 s') || (typeof beyondFields === 'string' && beyondFields);
  const reason = plan.running ? 'preflight is running' : failed ? 'preflight failed: fix the checks marked ✗' : plan.preflightError ? plan.preflightError : bad || undefined;
  const submit = async () => {
    const p: MigrationPlanInput = { vm: plan.vm, from: plan.from, to: plan.to, mode, downtimeLimitMs: Math.round(Number(dt)) };
    if (mode === 'postcopy-after') p.postcopyAfterPasses = Math.round(Number(after));
    if (bwNum !== undefined) p.maxBandwidth = Math.round(bwNum * 1e6);
    if (typeof beyondFields !== 'string') Object.assign(p, beyondFields);
    if (autoConverge) p.autoConverge = true;
    if (xbzrle) p.xbzrleCacheBytes = 64 * 1024 * 1024;
    if (multifd) p.multifdChannels = Math.round(Number(multifd));
    if (libvirt && temporary) {
      p.persistent = false;
      p.undefineSource = false;
    }
    if (policy === 'postcopy-when-never') p.policy = { name: policy };
    if (policy === 'downtime-steps') p.policy = { name: policy, stepMs: 100, ceilingMs: Math.max(2000, Math.round(Number(dt))), everyPasses: 1 };
    if (policy === 'dynamic-rate') p.policy = { name: policy, minBandwidth: 10_000_000, maxBandwidth: bwNum !== undefined ? Math.round(bwNum * 1e6) : 1_000_000_000, marginBandwidth: 6_250_000 };
    if (policy === 'deadline') p.policy = { name: policy, deadlineMs: Math.round(Number(deadline) * 1000), ceilingDowntimeMs: 2000, allowPostcopy: mode !== 'precopy' };
    setBusy(true);
    await start(p);
    setBusy(false);
  };
  return (
    <div className="overlay" role="presentation" onClick={(e) => e.target === e.currentTarget && close()}>
      <div className="dialog" role="dialog" aria-modal="true" aria-labelledby="plan-title">
        <h2 id="plan-title">
          Migrate {plan.vm}: {plan.from} → {plan.to}
        </h2>
        <h3>Preflight</h3>
        {plan.running && <p className="muted">Checking the destination…</p>}
        {plan.preflightError && <p className="error">{plan.preflightError}</p>}
        {plan.preflight && (
          <ul className="checks" data-testid="preflight">
            {plan.preflight.checks.map((c) => (
              <li key={c.id} className={`check check-${c.status}`} data-status={c.status}>
                <span className="icon" aria-label={c.status}>{ICON[c.status]}</span>
                <span>
                  <strong>{c.title}</strong>: {c.reason}
                  {c.fix && c.status !== 'pass' && <em className="fix"> Fix: {c.fix}</em>}
                </span>
              </li>
            ))}
          </ul>
        )}
        <h3>Plan</h3>
        <div className="form-grid">
          <label>
            Mode
            <select value={mode} onChange={(e) => setMode(e.target.value as typeof mode)} aria-label="mode">
              <option value="precopy">Precopy</option>
              <option value="postcopy">Postcopy right after the first pass</option>
              <option value="postcopy-after">Postcopy after N passes</option>
            </select>
          </label>
          {mode === 'postcopy-after' && (
            <label>
              Passes
              <input type="number" min={1} value={after} onChange={(e) => setAfter(e.target.value)} aria-label="passes before postcopy" />
            </label>
          )}
          <label>
            Policy
            <select value={policy} onChange={(e) => setPolicy(e.target.value as typeof policy)} aria-label="policy">
              <option value="manual">Manual</option>
              <option value="postcopy-when-never">Postcopy when it will never converge</option>
              <option value="downtime-steps">Raise the downtime limit step by step</option>
              <option value="dynamic-rate">Dynamic rate limiting</option>
              <option value="deadline">Done by a deadline</option>
            </select>
          </label>
          {policy === 'deadline' && (
            <label>
              Deadline (s)
              <input type="number" min={1} value={deadline} onChange={(e) => setDeadline(e.target.value)} aria-label="deadline in seconds" />
            </label>
          )}
          <label>
            Bandwidth (MB/s, empty = unlimited)
            <input type="number" min={1} value={bw} onChange={(e) => setBw(e.target.value)} aria-label="bandwidth in MB/s" />
          </label>
          <label>
            Downtime limit (ms)
            <input type="number" min={1} value={dt} onChange={(e) => setDt(e.target.value)} aria-label="downtime limit in ms" />
          </label>
          <label className="check-label"><input type="checkbox" checked={autoConverge} onChange={(e) => setAutoConverge(e.target.checked)} /> Auto-converge</label>
          <label className="check-label"><input type="checkbox" checked={xbzrle} onChange={(e) => setXbzrle(e.target.checked)} /> XBZRLE (64 MiB cache)</label>
          <label>
            Multifd channels
            <input type="number" min={1} max={64} value={multifd} placeholder="off" onChange={(e) => setMultifd(e.target.value)} aria-label="multifd channels" />
          </label>
          {libvirt && (
            <label className="check-label" title="virt-manager's 'Temporary move': the domain stays defined on the source and runs transient on the destination">
              <input type="checkbox" checked={temporary} onChange={(e) => setTemporary(e.target.checked)} /> Temporary move (keep the definition on {plan.from})
            </label>
          )}
        </div>
        <PlanBeyondOptions value={beyond} onChange={setBeyond} />
        <footer>
          {reason && <span className="muted" data-testid="start-reason">{reason}</span>}
          <button type="button" onClick={close}>Close</button>
          <button type="button" className="primary" disabled={!!reason || busy} onClick={() => void submit()}>
            {busy ? 'Starting…' : 'Start migration'}
          </button>
        </footer>
      </div>
    </div>
  );
}
