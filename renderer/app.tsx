import { useEffect, useState } from 'react';
import { useConsole, wireEvents } from './store/console-store';
import { onBridgeState } from './bridge/ferry-bridge';
import type { BridgeState } from './bridge/ferry-bridge';
import { HostsBoard } from './views/hosts-board';
import { PlanDialog } from './views/plan-dialog';
import { MigrationView } from './views/migration-view';
import { AddHostForm, PassphraseDialog, TrustDialog } from './views/host-dialogs';
import { TimelineView } from './views/timeline-view';
import { EvacuateDialog, EvacuationPanel } from './views/evacuation';
import { CompareView } from './views/compare-view';
import { OpenTimelineButton, RecordedMenu, TimelineTabs, useDropToOpen } from './views/timeline-picker';

function MigrationTabs() {
  const order = useConsole((s) => s.order);
  const migrations = useConsole((s) => s.migrations);
  const selected = useConsole((s) => s.selected);
  const select = useConsole((s) => s.select);
  const view = useConsole((s) => s.view);
  const show = useConsole((s) => s.show);
  if (order.length === 0) return <p className="empty">No migrations yet: drag a VM card onto another host.</p>;
  return (
    <nav className="tabs" aria-label="migrations">
      {[...order].reverse().map((id) => {
        const m = migrations[id]!;
        const p = m.summary.plan as { vm: string; from: string; to: string };
        return (
          <button key={id} type="button" className={`tab ${view.kind === 'live' && selected === id ? 'active' : ''}`} aria-pressed={view.kind === 'live' && selected === id} onClick={() => { select(id); show({ kind: 'live' }); }}>
            {p.vm} {p.from}→{p.to} <span className={`phase-badge phase-${m.summary.phase}`}>{m.summary.phase}</span>
          </button>
        );
      })}
    </nav>
  );
}

export function App() {
  const refresh = useConsole((s) => s.refresh);
  const theme = useConsole((s) => s.theme);
  const toggleTheme = useConsole((s) => s.toggleTheme);
  const copyDiagnostics = useConsole((s) => s.copyDiagnostics);
  const lab = useConsole((s) => s.lab);
  const startLab = useConsole((s) => s.startLab);
  const selected = useConsole((s) => s.selected ?? s.order.at(-1));
  const toasts = useConsole((s) => s.toasts);
  const error = useConsole((s) => s.error);
  const [conn, setConn] = useState<BridgeState>('connecting');
  const [adding, setAdding] = useState(false);
  const view = useConsole((s) => s.view);
  const timelines = useConsole((s) => s.timelines);
  const demo = useConsole((s) => s.demo);
  const runDemo = useConsole((s) => s.runDemo);
  // auto-converge vs dirty-limit only where a lab host's QEMU schema has dirty-limit (8.1+)
  const dirtyLimitLab = useConsole((s) => s.hosts.some((h) => h.config.id.startsWith('lab-') && (h.facts?.qemuFeatures ?? []).includes('dirty-limit')));
  const dropping = useDropToOpen();
  const openTimeline = view.kind === 'timeline' ? timelines.find((t) => t.key === view.key) : undefined;

  useEffect(() => {
    const off = wireEvents();
    let opened = false;
    const offState = onBridgeState((s) => {
      setConn(s);
      if (s !== 'open') return;
      void refresh();
      // Reconnected: events sent while the link was down are lost; the histories fill the gap.
      if (opened) void useConsole.getState().resync();
      opened = true;
    });
    const timer = setInterval(() => void refresh(), 5000);
    return () => {
      off();
      offState();
      clearInterval(timer);
    };
  }, [refresh]);

  useEffect(() => {
    document.documentElement.dataset.theme = theme;
  }, [theme]);

  useEffect(() => {
    const onKey = (e: KeyboardEvent) => {
      if (e.target instanceof HTMLInputElement || e.target instanceof HTMLSelectElement) return;
      if (e.ctrlKey || e.metaKey || e.altKey) return;
      if (e.key === 't') toggleTheme();
      if (e.key === 'o') document.querySelector<HTMLInputElement>('[data-testid=timeline-file]')?.click();
      if (e.key === 'e') useConsole.getState().exportReport();
      if (e.key === 'r') void refresh();
    };
    window.addEventListener('keydown', onKey);
    return () => window.removeEventListener('keydown', onKey);
  }, [toggleTheme, refresh]);

  return (
    <div className="app">
      <header className="topbar">
        <h1>Ferry</h1>
        <span className={`conn conn-${conn === 'open' ? 'connected' : conn}`} data-testid="bridge-state">{conn === 'open' ? 'connected' : conn}</span>
        <div className="spacer" />
        <button type="button" onClick={() => void startLab()} disabled={lab.starting} data-testid="start-lab">
          {lab.starting ? 'Starting lab…' : lab.running ? 'Lab running' : 'Start lab'}
        </button>
        <button type="button" onClick={() => void runDemo()} disabled={demo.running || lab.starting} data-testid="run-demo" title="Migrate the lab's demo guest with precopy, then back with postcopy, and compare the two">
          {demo.running ? 'Demo running…' : 'Demo: precopy vs postcopy'}
        </button>
        {dirtyLimitLab && (
          <button type="button" onClick={() => void runDemo('converge')} disabled={demo.running || lab.starting} data-testid="run-demo-converge" title="The same guest under auto-converge, then dirty-limit, both on the newer QEMU (the VM is moved there first if needed), compared">
            Demo: auto-converge vs dirty-limit
          </button>
        )}
        <OpenTimelineButton />
        <RecordedMenu />
        <button type="button" onClick={() => setAdding((a) => !a)}>Add host</button>
        <button type="button" onClick={() => void copyDiagnostics()} data-testid="copy-diagnostics" title="Copy this Ferry's hosts, SSH sessions, migrations and last log lines, for a support ticket (no secrets)">Copy diagnostics</button>
        <button type="button" onClick={toggleTheme} aria-label="toggle dark theme" title="Theme (t)">{theme === 'light' ? '☾' : '☀'}</button>
      </header>
      {error && <p className="error banner" role="alert">{error}</p>}
      {adding && <AddHostForm onDone={() => setAdding(false)} />}
      <HostsBoard />
      <EvacuationPanel />
      <MigrationTabs />
      <TimelineTabs />
      {view.kind === 'live' && selected && <MigrationView id={selected} />}
      {view.kind === 'timeline' && openTimeline && <TimelineView open={openTimeline} />}
      {view.kind === 'compare' && <CompareView keys={view.keys} />}
      {dropping && <div className="drop-overlay" aria-hidden="true">Drop a .ferry.jsonl timeline, a Proxmox task log or a guestperf report to open it</div>}
      <PlanDialog />
      <TrustDialog />
      <PassphraseDialog />
      <EvacuateDialog />
      <div className="toasts" aria-live="polite">
        {toasts.map((t) => (
          <div key={t.id} className={`toast toast-${t.kind}`} role={t.kind === 'error' ? 'alert' : 'status'}>{t.text}</div>
        ))}
      </div>
    </div>
  );
}
