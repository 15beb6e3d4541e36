/**
 * Ways to open a timeline: a file picker, dropping files anywhere on the window, and the
 * list of timelines this console recorded. Plus tabs for the open ones and "compare".
 */
import { useEffect, useRef, useState } from 'react';
import { useConsole } from '../store/console-store';

async function openFiles(files: FileList | File[]): Promise<void> {
  const { openTimelineText, toast } = useConsole.getState();
  for (const f of Array.from(files)) {
    try {
      openTimelineText(f.name, await f.text());
    } catch (e) {
      toast(`Cannot read ${f.name}: ${(e as Error).message}`, 'error');
    }
  }
}

/** Drop a `.ferry.jsonl` (or a Proxmox task log, a guestperf report) anywhere on the window to open it. */
export function useDropToOpen(): boolean {
  const [over, setOver] = useState(false);
  useEffect(() => {
    const hasFiles = (e: DragEvent) => Array.from(e.dataTransfer?.types ?? []).includes('Files');
    const onOver = (e: DragEvent) => {
      if (!hasFiles(e)) return;
      e.preventDefault();
      setOver(true);
    };
    const onLeave = (e: DragEvent) => {
      if (e.relatedTarget === null) setOver(false);
    };
    const onDrop = (e: DragEvent) => {
      if (!hasFiles(e)) return;
      e.preventDefault();
      setOver(false);
      if (e.dataTransfer?.files.length) void openFiles(e.dataTransfer.files);
    };
    window.addEventListener('dragover', onOver);
    window.addEventListener('dragleave', onLeave);
    window.addEventListener('drop', onDrop);
    return () => {
      window.removeEventListener('dragover', onOver);
      window.removeEventListener('dragleave', onLeave);
      window.removeEventListener('drop', onDrop);
    };
  }, []);
  return over;
}

export function OpenTimelineButton() {
  const input = useRef<HTMLInputElement>(null);
  return (
    <>
      <button type="button" onClick={() => input.current?.click()} title="Open a recorded .ferry.jsonl, a Proxmox VE migration task log or a QEMU guestperf report, or drop it on the window (o)">Open timeline…</button>
      <input
        ref={input}
        type="file"
        accept=".jsonl,.log,.txt,.json,application/jsonl,application/x-ndjson,application/json,text/plain"
        multiple
        hidden
        data-testid="timeline-file"
        aria-label="timeline file"
        onChange={(e) => {
          if (e.target.files?.length) void openFiles(e.target.files);
          e.target.value = '';
        }}
      />
    </>
  );
}

export function RecordedMenu() {
  const recorded = useConsole((s) => s.recorded);
  const refreshRecorded = useConsole((s) => s.refreshRecorded);
  const openRecorded = useConsole((s) => s.openRecorded);
  const [open, setOpen] = useState(false);
  return (
    <div className="menu">
      <button type="button" aria-expanded={open} onClick={() => { if (!open) void refreshRecorded(); setOpen(!open); }}>Recorded ▾</button>
      {open && (
        <ul className="menu-list" role="menu" aria-label="recorded timelines">
          {recorded.length === 0 && <li className="muted small">No recorded migrations yet.</li>}
          {recorded.slice(0, 30).map((r) => (
            <li key={r.name} role="none">
              <button type="button" role="menuitem" onClick={() => { setOpen(false); void openRecorded(r.name); }} title={r.name}>
                {r.vm ?? '?'} {r.from ?? '?'}→{r.to ?? '?'} <span className="muted small">{new Date(r.modifiedAt).toLocaleTimeString()} · {r.outcome}</span>
              </button>
            </li>
          ))}
        </ul>
      )}
    </div>
  );
}

/** Tabs of the open timelines, and a compare action over the checked ones. */
export function TimelineTabs() {
  const timelines = useConsole((s) => s.timelines);
  const view = useConsole((s) => s.view);
  const show = useConsole((s) => s.show);
  const [checked, setChecked] = useState<string[]>([]);
  if (timelines.length === 0) return null;
  const sel = checked.filter((k) => timelines.some((t) => t.key === k));
  return (
    <nav className="tabs timeline-tabs" aria-label="open timelines">
      <span className="muted small">Timelines:</span>
      {timelines.map((t) => (
        <span key={t.key} className={`tab ${view.kind === 'timeline' && view.key === t.key ? 'active' : ''}`}>
          <input type="checkbox" aria-label={`compare ${t.name}`} checked={sel.includes(t.key)} onChange={(e) => setChecked(e.target.checked ? [...sel, t.key] : sel.filter((k) => k !== t.key))} />
          <button type="button" className="link" onClick={() => show({ kind: 'timeline', key: t.key })}>{t.name}</button>
        </span>
      ))}
      <button type="button" disabled={sel.length < 2} onClick={() => show({ kind: 'compare', keys: sel })} title={sel.length < 2 ? 'Tick two or more timelines to compare them' : 'Overlay the ticked timelines'}>
        Compare{sel.length >= 2 ? ` (${sel.length})` : ''}
      </button>
    </nav>
  );
}
