/**
 * Host evacuation in the console: every VM of a host to one or more others, at most K at a
 * time, optionally by a deadline; the whole evacuation's progress and each VM's.
 */
import { useState } from 'react';
import { useConsole } from '../store/console-store';
import type { HostInfo } from '../../shared/contract';
import { ModalForm } from '../components/modal-form';

export function EvacuateDialog() {
  const from = useConsole((s) => s.evacuating);
  const hosts = useConsole((s) => s.hosts);
  const vms = useConsole((s) => (from ? s.vms[from] : undefined));
  const close = useConsole((s) => s.closeEvacuate);
  const start = useConsole((s) => s.startEvacuation);
  const [to, setTo] = useState<string[]>([]);
  const [parallel, setParallel] = useState('2');
  const [deadline, setDeadline] = useState('');
  const [bandwidth, setBandwidth] = useState('');
  const [error, setError] = useState<string>();
  if (!from) return null;
  const targets = hosts.filter((h: HostInfo) => h.config.id !== from && h.state === 'connected');
  const chosen = to.filter((t) => targets.some((h) => h.config.id === t));
  const k = Number(parallel);
  const bad = (chosen.length === 0 && 'pick at least one destination host')
    || (!(Number.isInteger(k) && k >= 1 && k <= 16) && 'at most K: a whole number from 1 to 16')
    || (deadline !== '' && !(Number(deadline) > 0) && 'the deadline must be a positive number of minutes')
    || (bandwidth !== '' && !(Number(bandwidth) > 0) && 'bandwidth must be a positive number of MB/s')
    || (!vms?.length && `${from} has no VMs to move`);
  return (
    <ModalForm
      titleId="evac-title"
      title={`Evacuate ${from}`}
      onSubmit={() => {
        if (bad) return;
        void start({ from, to: chosen, parallel: k, ...(deadline ? { deadlineMs: Math.round(Number(deadline) * 60_000) } : {}), ...(bandwidth ? { defaults: { maxBandwidth: Math.round(Number(bandwidth) * 1e6) } } : {}) }).then((err) => setError(err));
      }}
    >
      <p>Moves every VM on {from} ({vms?.map((v) => v.name).join(', ') || 'none'}) to the hosts you pick, spread over them. A VM that fails stays on {from}; the others go on.</p>
      <fieldset className="targets">
        <legend>To</legend>
        {targets.length === 0 && <p className="muted">No other connected host.</p>}
        {targets.map((h) => (
          <label key={h.config.id} className="inline">
            <input type="checkbox" checked={chosen.includes(h.config.id)} onChange={(e) => setTo(e.target.checked ? [...chosen, h.config.id] : chosen.filter((x) => x !== h.config.id))} aria-label={`evacuate to ${h.config.id}`} />
            {h.config.name ?? h.config.id}
          </label>
        ))}
      </fieldset>
      <p className="row">
        <label className="inline">At most<input type="number" min={1} max={16} value={parallel} onChange={(e) => setParallel(e.target.value)} aria-label="migrations at a time" />at a time</label>
        <label className="inline">Done within<input type="number" min={0} step="any" value={deadline} placeholder="no deadline" onChange={(e) => setDeadline(e.target.value)} aria-label="deadline in minutes" />min</label>
        <label className="inline">Bandwidth<input type="number" min={1} value={bandwidth} placeholder="max" onChange={(e) => setBandwidth(e.target.value)} aria-label="bandwidth per migration in MB/s" />MB/s</label>
      </p>
      {(error ?? (bad && chosen.length > 0 ? bad : undefined)) && <p className="error" role="alert">{error ?? bad}</p>}
      <footer>
        <span className="muted">With a deadline Ferry raises bandwidth, then the downtime limit, then switches to postcopy or stops the VMs.</span>
        <button type="button" onClick={close}>Cancel</button>
        <button type="submit" className="primary" disabled={!!bad}>Evacuate</button>
      </footer>
    </ModalForm>
  );
}

export function EvacuationPanel() {
  const evacuations = useConsole((s) => s.evacuations);
  const list = Object.values(evacuations).sort((a, b) => b.startedAt - a.startedAt).slice(0, 3);
  if (list.length === 0) return null;
  return (
    <section className="evacuations" aria-label="evacuations">
      {list.map((e) => {
        const done = e.items.filter((i) => i.state === 'completed').length;
        return (
          <div key={e.id} className="evacuation" data-testid={`evacuation-${e.from}`}>
            <strong>Evacuating {e.from}</strong>{' '}
            <span className="muted small">
              {done}/{e.items.length} moved · {e.parallel} at a time{e.deadlineMs ? ` · deadline ${Math.round(e.deadlineMs / 60_000 * 10) / 10} min` : ''}{e.done ? ' · finished' : ''}
            </span>
            <div className="progress small-bar" role="progressbar" aria-valuenow={Math.round((100 * done) / Math.max(1, e.items.length))} aria-valuemin={0} aria-valuemax={100} aria-label={`evacuation of ${e.from}`}>
              <div className="bar" style={{ width: `${(100 * done) / Math.max(1, e.items.length)}%` }} />
            </div>
            <ul className="evac-items">
              {e.items.map((i) => (
                <li key={i.vm} data-state={i.state}>
                  {i.vm} → {i.to}: <span className={`phase-badge phase-${i.state}`}>{i.state}</span>{i.downtimeMs !== undefined ? ` downtime ${i.downtimeMs} ms` : ''}{i.reason ? ` — ${i.reason}` : ''}
                </li>
              ))}
            </ul>
          </div>
        );
      })}
    </section>
  );
}
