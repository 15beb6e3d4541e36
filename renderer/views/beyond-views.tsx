/**
 * The console's views for issue 9 (beyond shared storage), kept in one file so they merge
 * cleanly with the rest of the renderer: the plan dialog's storage/transport options, the
 * live view's transport badge and storage-copy figures (its charts are the shared picture's), and
 * the saved states of a host.
 */
import { useCallback, useEffect, useState } from 'react';
import { useConsole } from '../store/console-store';
import { ferry } from '../bridge/ferry-bridge';
import type { MigrationEntry } from '../store/console-store';
import { formatBytes, formatMs, formatRate } from '../../shared/analysis/units';
import type { MigrationPlanInput, MigrationSample } from '../../shared/model/migration';
import type { PreflightResult } from '../../shared/model/preflight';
import type { SavedStateEntry, StateResult } from '../../shared/model/saved-state';
import type { VmInfo } from '../../shared/model/vm';
import { findLast } from '../../shared/model/ring';

export interface BeyondPlan {
  copyStorage: boolean;
  /** MB/s; empty = unlimited. */
  storageBandwidth: string;
  tunnel: boolean;
}

export const NO_BEYOND: BeyondPlan = { copyStorage: false, storageBandwidth: '', tunnel: false };

/** The plan fields these options add, or the reason they are not valid. */
export function beyondPlanFields(b: BeyondPlan): Partial<MigrationPlanInput> | string {
  const out: Partial<MigrationPlanInput> = {};
  if (b.tunnel) out.transport = 'ssh-tunnel';
  if (b.copyStorage) {
    out.copyStorage = true;
    if (b.storageBandwidth.trim() !== '') {
      const n = Number(b.storageBandwidth);
      if (!(n > 0)) return 'storage bandwidth must be a positive number of MB/s';
      out.storageBandwidth = Math.round(n * 1e6);
    }
  }
  return out;
}

/** Whether preflight says the disks are missing on the destination (the storage copy is the way). */
export function storageCopyOffered(pre: PreflightResult | undefined): boolean {
  return pre?.checks.some((c) => c.id === 'storage' && c.status === 'fail' && /copyStorage/.test(c.fix ?? '')) ?? false;
}

/**
 * Plan dialog options. Changing them runs preflight again with them (the storage-copy and
 * tunnel checks only run when asked for), writing the result where the dialog shows it.
 */
export function PlanBeyondOptions({ value, onChange }: { value: BeyondPlan; onChange: (b: BeyondPlan) => void }) {
  const plan = useConsole((s) => s.plan);
  const vm = plan?.vm;
  const from = plan?.from;
  const to = plan?.to;
  const [asked, setAsked] = useState(false);
  useEffect(() => {
    if (!asked || !vm || !from || !to) return;
    const fields = beyondPlanFields(value);
    if (typeof fields === 'string') return;
    let stale = false;
    useConsole.setState((s) => (s.plan ? { plan: { ...s.plan, running: true } } : {}));
    void ferry().invoke('migrations:preflight', { vm, from, to, ...fields }).then((r) => {
      if (stale) return;
      useConsole.setState((s) => {
        if (!s.plan || s.plan.vm !== vm) return {};
        const next = { ...s.plan, running: false };
        if (r.ok) {
          next.preflight = r.value;
          delete next.preflightError;
        } else next.preflightError = r.error.message;
        return { plan: next };
      });
    });
    return () => {
      stale = true;
    };
  }, [asked, vm, from, to, value]);
  const set = (b: Partial<BeyondPlan>) => {
    setAsked(true);
    onChange({ ...value, ...b });
  };
  return (
    <fieldset className="form-grid beyond-options" aria-label="storage and transport">
      <label className="check-label">
        <input type="checkbox" checked={value.copyStorage} onChange={(e) => set({ copyStorage: e.target.checked })} aria-label="copy storage" />
        Copy the disks (no shared storage){storageCopyOffered(plan?.preflight) && !value.copyStorage ? ' — preflight suggests it' : ''}
      </label>
      {value.copyStorage && (
        <label>
          Storage copy MB/s (empty = unlimited)
          <input type="number" min={1} value={value.storageBandwidth} onChange={(e) => set({ storageBandwidth: e.target.value })} aria-label="storage bandwidth in MB/s" />
        </label>
      )}
      <label className="check-label">
        <input type="checkbox" checked={value.tunnel} onChange={(e) => set({ tunnel: e.target.checked })} aria-label="ssh tunnel" />
        Carry the stream inside SSH (untrusted network)
      </label>
    </fieldset>
  );
}

/** In the live migration view: which transport carries the stream, and the storage copy. */
export function BeyondPanel({ entry }: { entry: MigrationEntry }) {
  const plan = entry.summary.plan as { transport?: string; copyStorage?: boolean };
  const transport = (entry.summary as { transport?: string }).transport ?? plan.transport ?? 'tcp';
  const last = findLast(entry.samples, (s) => s.storage !== undefined)?.storage;
  const final = entry.final as (typeof entry.final & { tunnel?: { forwardBytes: number; backBytes: number }; storage?: { copiedBytes: number; readyMs?: number; removedTargets?: string[] } }) | undefined;
  return (
    <div className="beyond" data-testid="beyond-panel">
      <p className="meta" data-testid="transport">
        Stream: {transport === 'ssh-tunnel' ? 'inside SSH (unix sockets relayed by Ferry)' : 'TCP, host to host'}
        {final?.tunnel ? ` · ${formatBytes(final.tunnel.forwardBytes)} relayed, ${formatBytes(final.tunnel.backBytes)} back` : ''}
      </p>
      {plan.copyStorage && (
        <>
          <dl className="figures live" data-testid="storage-figures">
            <div><dt>Disks copied</dt><dd>{formatBytes(last?.copiedBytes ?? final?.storage?.copiedBytes)} / {formatBytes(last?.totalBytes)}</dd></div>
            <div><dt>Copy rate</dt><dd>{formatRate(last?.rate)}</dd></div>
            <div><dt>Disk dirtying</dt><dd>{formatRate(last?.dirtyRate)}</dd></div>
            <div><dt>In sync</dt><dd>{final?.storage?.readyMs !== undefined ? `after ${formatMs(final.storage.readyMs)}` : last?.ready ? 'yes' : 'not yet'}</dd></div>
            {final?.storage?.removedTargets?.length ? <div><dt>Partial copies</dt><dd>removed</dd></div> : null}
          </dl>
        </>
      )}
    </div>
  );
}

/** A host's saved states (`states:list`), with restore, and saving one of its VMs. */
export function SavedStates({ hostId, vms }: { hostId: string; vms: readonly VmInfo[] }) {
  const [list, setList] = useState<SavedStateEntry[] | undefined>();
  const [error, setError] = useState<string>();
  const [busy, setBusy] = useState<string>();
  const [vm, setVm] = useState('');
  const [compress, setCompress] = useState<'none' | 'gzip' | 'zstd'>('zstd');
  const [open, setOpen] = useState(false);
  const [progress, setProgress] = useState<string>();
  useEffect(() => {
    if (!busy) return;
    // What the save or restore has moved so far (its query-migrate samples).
    const off = ferry().on('state:sample', (p) => {
      const s = p.sample as MigrationSample;
      if (s.transferredBytes !== undefined) setProgress(`${formatBytes(s.transferredBytes)}${s.transferRate ? ` at ${formatRate(s.transferRate)}` : ''}`);
    });
    return () => {
      off();
      setProgress(undefined);
    };
  }, [busy]);
  const refresh = useCallback(async () => {
    const r = await ferry().invoke('states:list', { hostId });
    if (r.ok) setList(r.value);
    else setError(r.error.message);
  }, [hostId]);
  useEffect(() => {
    if (open) void refresh();
  }, [open, refresh]);
  const run = async (what: string, call: () => Promise<{ ok: true; value: StateResult } | { ok: false; error: { message: string } }>) => {
    setBusy(what);
    setError(undefined);
    const r = await call();
    setBusy(undefined);
    if (!r.ok) setError(r.error.message);
    await refresh();
    await useConsole.getState().refresh();
  };
  const managed = vms.filter((v) => v.managed && v.runState !== 'stopped');
  return (
    <details className="saved-states" style={{ marginTop: 8, minWidth: 0, overflowWrap: 'anywhere' }} onToggle={(e) => setOpen((e.target as HTMLDetailsElement).open)} data-testid={`states-${hostId}`}>
      <summary>Saved states{list ? ` (${list.length})` : ''}</summary>
      {error && <p className="error small">{error}</p>}
      {busy && <p className="meta" data-testid={`states-progress-${hostId}`}>{busy}{progress ? `: ${progress}` : '…'}</p>}
      {list && list.length === 0 && <p className="empty">None in this host's states directory.</p>}
      <ul style={{ paddingLeft: 16, margin: '4px 0' }}>
        {(list ?? []).map((s) => {
          const name = s.file.slice(s.file.lastIndexOf('/') + 1);
          return (
            <li key={s.file}>
              <strong>{name}</strong> {s.vm} · {formatBytes(s.sizeBytes)} · {new Date(s.createdAt).toLocaleString()} · {s.compression}{s.encryption ? ` + ${s.encryption}` : ''}
              {!s.complete && <span className="bad"> incomplete</span>}
              <button type="button" className="small" disabled={!!busy || !s.complete} onClick={() => void run(`restore ${name}`, () => ferry().invoke('states:restore', { hostId, file: s.file }))}>
                {busy === `restore ${name}` ? 'Restoring…' : 'Restore'}
              </button>
            </li>
          );
        })}
      </ul>
      {managed.length > 0 && (
        <div style={{ display: 'flex', flexWrap: 'wrap', gap: 6, alignItems: 'center' }}>
          <select value={vm} onChange={(e) => setVm(e.target.value)} aria-label="VM to save">
            <option value="">VM to save…</option>
            {managed.map((v) => <option key={v.name} value={v.name}>{v.name}</option>)}
          </select>
          <select value={compress} onChange={(e) => setCompress(e.target.value as typeof compress)} aria-label="compression">
            <option value="zstd">zstd</option>
            <option value="gzip">gzip</option>
            <option value="none">no compression</option>
          </select>
          <button
            type="button"
            disabled={!vm || !!busy}
            title="Pause the VM, write its state to a file on this host, then stop it"
            onClick={() => void run(`save ${vm}`, () => ferry().invoke('states:save', { hostId, vm, file: `${vm}-${new Date().toISOString().replace(/[-:]/g, '').replace(/\..*/, '')}.state`, compress }))}
          >
            {busy === `save ${vm}` ? 'Saving…' : 'Save to file'}
          </button>
        </div>
      )}
    </details>
  );
}
