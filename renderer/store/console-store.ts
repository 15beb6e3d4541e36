/**
 * The console's state: zustand, in slices (hosts, vms, migrations, ui). Samples live in a
 * per-migration ring buffer (shared/model/ring.ts) that is replaced on every update, never
 * mutated as far as anyone holding an old one can see, and costs O(1) per sample; narrow
 * selectors re-render only what changed.
 */
import { create } from 'zustand';
import type { HostInfo, MigrationControl, MigrationSummaryPayload } from '../../shared/contract';
import type { VmInfo } from '../../shared/model/vm';
import type { MigrationFinal, MigrationPhase, MigrationPlanInput, MigrationSample } from '../../shared/model/migration';
import { TERMINAL_PHASES } from '../../shared/model/migration';
import type { PreflightResult } from '../../shared/model/preflight';
import type { FerryError } from '../../shared/errors';
import type { EvacuationSummary, MigrationHistory, TimelineFile } from '../../shared/contract';
import type { TimelineRecord } from '../../shared/model/timeline';
import { entryFromRecords, entryFromTimeline, logLine } from '../../shared/report/picture';
import type { LogEntry, MigrationEntry } from '../../shared/report/picture';
import { parseAnyTimeline } from '../../shared/import/open-timeline';
import { compareHtml, reportHtml } from '../../shared/report/report-html';
import { baseName, downloadText } from '../export/exports';
import type { ParsedTimeline } from '../../shared/model/timeline';
import { ferry } from '../bridge/ferry-bridge';
import { pushTo, Ring } from '../../shared/model/ring';

export const RING = 36_000; // one hour at 10 Hz

export type { LogEntry, MigrationEntry } from '../../shared/report/picture';

/** A timeline open in the viewer. */
export interface OpenTimeline {
  key: string;
  name: string;
  entry: MigrationEntry;
  parsed: ParsedTimeline;
}

export interface HostFormInput {
  id: string;
  host: string;
  user?: string;
  port?: number;
  identityFile?: string;
  proxyJump?: string;
}

export type ConsoleView = { kind: 'live' } | { kind: 'timeline'; key: string } | { kind: 'compare'; keys: string[] };

export interface PlanDraft {
  vm: string;
  from: string;
  to: string;
  preflight?: PreflightResult;
  preflightError?: string;
  running?: boolean;
}

export interface TrustPrompt {
  hostId: string;
  fingerprint: string;
  keyType: string;
  host: string;
}

export interface ConsoleState {
  hosts: HostInfo[];
  vms: Record<string, VmInfo[]>;
  migrations: Record<string, MigrationEntry>;
  order: string[];
  selected?: string;
  plan?: PlanDraft;
  trust?: TrustPrompt;
  toasts: { id: number; text: string; kind: 'ok' | 'error' | 'info' }[];
  theme: 'light' | 'dark';
  lab: { running: boolean; starting: boolean };
  error?: string;
  view: ConsoleView;
  timelines: OpenTimeline[];
  recorded: TimelineFile[];
  demo: { running: boolean; error?: string };
  /** The host whose evacuation dialog is open. */
  evacuating?: string;
  evacuations: Record<string, EvacuationSummary>;
  openEvacuate(hostId: string): void;
  closeEvacuate(): void;
  startEvacuation(req: { from: string; to: string[]; parallel: number; deadlineMs?: number; defaults?: Record<string, unknown> }): Promise<string | undefined>;
  applyEvacuation(e: EvacuationSummary): void;

  refresh(): Promise<void>;
  /** Opens a timeline's text (a file the user picked or dropped); false, with a toast, when it is not one. */
  openTimelineText(name: string, text: string): boolean;
  /** Opens a timeline this console recorded, by its file name. */
  openRecorded(name: string): Promise<void>;
  refreshRecorded(): Promise<void>;
  closeTimeline(key: string): void;
  show(view: ConsoleView): void;
  /** The lab demo: precopy then postcopy of one workload, then their comparison. */
  /** `converge`: auto-converge vs dirty-limit (offered where a lab host's QEMU has dirty-limit). */
  runDemo(compare?: 'postcopy' | 'converge'): Promise<void>;
  /** Downloads the HTML report of the timeline (or comparison) on screen. */
  exportReport(): void;
  refreshVms(hostId: string): Promise<void>;
  startLab(): Promise<void>;
  openPlan(vm: string, from: string, to: string): Promise<void>;
  closePlan(): void;
  start(plan: MigrationPlanInput): Promise<boolean>;
  /** Watch-only: records a migration someone else runs on this VM (Ferry issues no control). */
  watch(vm: VmInfo): Promise<boolean>;
  control(id: string, control: Parameters<ControlFn>[1]): Promise<FerryError | undefined>;
  select(id: string | undefined): void;
  addHost(input: HostFormInput, edit?: boolean): Promise<FerryError | undefined>;
  connectHost(id: string, secret?: { passphrase: string; remember: boolean }): Promise<void>;
  passphrase?: { hostId: string; keys: string[]; wrong: boolean; canRemember?: { available: boolean; reason?: string } };
  dismissPassphrase(): void;
  removeHost(id: string): Promise<void>;
  trustKey(): Promise<void>;
  dismissTrust(): void;
  toast(text: string, kind?: 'ok' | 'error' | 'info'): void;
  guestCommand(hostId: string, vm: string, command: string): Promise<void>;
  toggleTheme(): void;
  /** Puts the diagnostics text on the clipboard (or downloads it where the clipboard is refused). */
  copyDiagnostics(): Promise<void>;
  applySample(id: string, sample: MigrationSample): void;
  /**
   * Fetches a migration's whole history from the service and merges it into its entry: a
   * console that joined late (a tab opened or reloaded mid-migration, or after it) then
   * holds, and draws, what one that watched from the start holds.
   */
  hydrate(id: string): Promise<void>;
  /** Hydrates every migration not yet ended again (after the connection to the service was lost: events may be missing). */
  resync(): Promise<void>;
  applyStarted(summary: MigrationSummaryPayload): void;
  applyPhase(id: string, phase: MigrationPhase, from: MigrationPhase, reason?: string, t?: number): void;
  applyEnded(id: string, final: MigrationFinal): void;
  /** A hypervisor event, gap, note or policy decision as the timeline records it: a line in the live log. */
  applyRecord(id: string, record: TimelineRecord): void;
}

type ControlFn = (id: string, control: MigrationControl) => Promise<FerryError | undefined>;

let toastId = 1;

const startedLine = (summary: MigrationSummaryPayload): LogEntry => ({ t: summary.startedAt, kind: 'info', text: `migration ${summary.id} started` });

/** The entry a history makes: what a console that received every event since the start holds. */
export function entryFromHistory(h: MigrationHistory): MigrationEntry {
  // The store keeps a sample only if it is newer than the last one: the same rule here.
  const samples: MigrationSample[] = [];
  for (const x of h.samples as unknown as MigrationSample[]) if (!(samples.length && x.t <= samples.at(-1)!.t)) samples.push(x);
  const e = entryFromRecords(h.summary, h.records as unknown as TimelineRecord[], samples);
  return { ...e, samples: Ring.from(samples, RING), log: [startedLine(h.summary), ...e.log] };
}

const logKey = (l: LogEntry) => `${l.kind}\n${l.t}\n${l.text}`;

/**
 * A history merged with the entry as it stands (events may have arrived while the history
 * was on its way, before or after the service took it): the history's items, then what the
 * entry has that the history has not — samples newer than its last, phases and log lines it
 * lacks. Nothing twice, nothing lost, whichever of the two is ahead.
 */
export function mergeHistory(base: MigrationEntry, cur: MigrationEntry | undefined): MigrationEntry {
  if (!cur) return base;
  let samples = base.samples;
  const lastT = samples.at(-1)?.t ?? -Infinity;
  for (const x of cur.samples) if (x.t > lastT) samples = pushTo(samples, x, RING);
  const havePhase = new Set(base.phases.map((p) => `${p.phase}@${p.t}`));
  // The entry's first phase is the one it was created with (the summary's phase then), not a change.
  const phases = [...base.phases, ...cur.phases.slice(1).filter((p) => !havePhase.has(`${p.phase}@${p.t}`))].sort((a, b) => a.t - b.t);
  const haveLine = new Set(base.log.map(logKey));
  const log = [...base.log, ...cur.log.filter((l) => !haveLine.has(logKey(l)) && !(l.kind === 'end' && base.final))].sort((a, b) => a.t - b.t);
  const final = base.final ?? cur.final;
  const phase = final?.outcome ?? phases.at(-1)?.phase ?? base.summary.phase;
  return { ...base, summary: { ...base.summary, phase }, samples, phases, log, ...(final ? { final } : {}) };
}

/** Hydrations in flight, by migration id (one at a time each). */
const hydrating = new Set<string>();

const emptyEntry = (summary: MigrationSummaryPayload): MigrationEntry => ({
  summary,
  samples: Ring.from(summary.last ? [summary.last as MigrationSample] : [], RING),
  phases: [{ phase: summary.phase, t: summary.startedAt }],
  log: [startedLine(summary)],
  ...(summary.final ? { final: summary.final as MigrationFinal } : {}),
});

export const useConsole = create<ConsoleState>()((set, get) => ({
  hosts: [],
  vms: {},
  migrations: {},
  order: [],
  toasts: [],
  theme: (typeof localStorage !== 'undefined' && localStorage.getItem('ferry-theme') === 'dark') ? 'dark' : 'light',
  lab: { running: false, starting: false },
  view: { kind: 'live' },
  timelines: [],
  recorded: [],
  demo: { running: false },
  evacuations: {},

  openEvacuate(hostId) {
    set({ evacuating: hostId });
    void get().refreshVms(hostId);
  },

  closeEvacuate() {
    set({ evacuating: undefined });
  },

  async startEvacuation(req) {
    const r = await ferry().invoke('evacuations:start', req);
    if (!r.ok) return r.error.message;
    set((s) => ({ evacuating: undefined, evacuations: { ...s.evacuations, [r.value.id]: r.value } }));
    get().toast(`Evacuating ${req.from}: ${r.value.items.length} VM(s) to ${req.to.join(', ')}`, 'info');
    return undefined;
  },

  applyEvacuation(e) {
    const before = get().evacuations[e.id];
    set((s) => ({ evacuations: { ...s.evacuations, [e.id]: e } }));
    if (e.done && !before?.done) {
      const failed = e.items.filter((i) => i.state !== 'completed');
      get().toast(failed.length ? `Evacuation of ${e.from}: ${failed.length} VM(s) not moved (${failed.map((i) => i.vm).join(', ')})` : `Evacuation of ${e.from} done: ${e.items.length} VM(s) moved`, failed.length ? 'error' : 'ok');
      void get().refresh();
    }
  },

  openTimelineText(name, text) {
    let parsed: ParsedTimeline;
    try {
      // A Ferry timeline, a Proxmox VE task log or a guestperf report: told apart by their first line.
      parsed = parseAnyTimeline(text, name);
    } catch (e) {
      get().toast((e as Error).message, 'error');
      return false;
    }
    if (!parsed.header) return false;
    const key = `${parsed.header.migrationId}:${name}`;
    const open: OpenTimeline = { key, name, parsed, entry: entryFromTimeline(parsed) };
    set((s) => ({ timelines: [...s.timelines.filter((t) => t.key !== key), open], view: { kind: 'timeline', key } }));
    if (parsed.truncated) get().toast(`${name} is truncated: showing its ${parsed.records.length} complete records`, 'info');
    return true;
  },

  async openRecorded(name) {
    const r = await ferry().invoke('timelines:read', { name });
    if (!r.ok) {
      get().toast(`Cannot open ${name}: ${r.error.message}`, 'error');
      return;
    }
    get().openTimelineText(r.value.name, r.value.text);
  },

  async refreshRecorded() {
    const r = await ferry().invoke('timelines:list', {});
    if (r.ok) set({ recorded: r.value });
  },

  closeTimeline(key) {
    set((s) => {
      const timelines = s.timelines.filter((t) => t.key !== key);
      const view: ConsoleView = s.view.kind === 'timeline' && s.view.key === key ? { kind: 'live' } : s.view.kind === 'compare' ? { kind: 'compare', keys: s.view.keys.filter((k) => k !== key) } : s.view;
      return { timelines, view };
    });
  },

  show(view) {
    set({ view });
  },

  exportReport() {
    const { view, timelines } = get();
    if (view.kind === 'timeline') {
      const t = timelines.find((x) => x.key === view.key);
      if (t) downloadText(`${baseName(t.name)}.report.html`, reportHtml(t.parsed, t.name), 'text/html');
    } else if (view.kind === 'compare') {
      const items = view.keys.map((k) => timelines.find((x) => x.key === k)).filter((x) => x !== undefined);
      downloadText('ferry-compare.html', compareHtml(items.map((x) => ({ name: x.name, timeline: x.parsed }))), 'text/html');
    } else {
      get().toast('Open a timeline (or a comparison) to export its report', 'info');
    }
  },

  async runDemo(compare) {
    set({ demo: { running: true }, view: { kind: 'live' } });
    const r = await ferry().invoke('lab:demo', compare ? { compare } : {});
    if (!r.ok) {
      set({ demo: { running: false, error: r.error.message } });
      get().toast(`Demo failed: ${r.error.message}`, 'error');
      return;
    }
    const keys: string[] = [];
    for (const note of r.value.notes ?? []) get().toast(note, 'info');
    for (const run of r.value.runs.filter((x) => x.overlay !== false)) {
      const t = await ferry().invoke('timelines:read', { name: run.timeline });
      if (t.ok && get().openTimelineText(run.label, t.value.text)) keys.push(get().timelines.at(-1)!.key);
    }
    set({ demo: { running: false }, view: keys.length >= 2 ? { kind: 'compare', keys } : get().view });
    void get().refreshRecorded();
  },

  async refresh() {
    const [hosts, lab, migs] = await Promise.all([ferry().invoke('hosts:list', {}), ferry().invoke('lab:status', {}), ferry().invoke('migrations:list', {})]);
    if (!hosts.ok) {
      set({ error: hosts.error.message });
      return;
    }
    set({ hosts: hosts.value, error: undefined });
    if (lab.ok) set((s) => ({ lab: { ...s.lab, running: lab.value.running } }));
    if (migs.ok) {
      const joined: string[] = [];
      set((s) => {
        const migrations = { ...s.migrations };
        const order = [...s.order];
        for (const m of migs.value) {
          const known = migrations[m.id];
          if (!known) {
            migrations[m.id] = emptyEntry(m);
            order.push(m.id);
            joined.push(m.id);
          } else if (!known.final && TERMINAL_PHASES.includes(m.phase as MigrationPhase)) {
            // Ended, and this console missed the end (an event lost on the way): its story again.
            joined.push(m.id);
          }
        }
        return { migrations, order };
      });
      // Migrations this console did not see start: their story so far.
      for (const id of joined) void get().hydrate(id);
    }
    await Promise.all(hosts.value.filter((h) => h.state === 'connected').map((h) => get().refreshVms(h.config.id)));
  },

  async refreshVms(hostId) {
    const r = await ferry().invoke('vms:list', { hostId });
    if (r.ok) set((s) => ({ vms: { ...s.vms, [hostId]: r.value } }));
  },

  async startLab() {
    set((s) => ({ lab: { ...s.lab, starting: true } }));
    const r = await ferry().invoke('lab:up', {});
    set((s) => ({ lab: { running: r.ok || s.lab.running, starting: false } }));
    if (!r.ok) get().toast(`Could not start the lab: ${r.error.message}`, 'error');
    else get().toast(r.value.started ? `Lab started in ${(r.value.bootMs / 1000).toFixed(1)} s` : 'The lab was already running', 'ok');
    await get().refresh();
  },

  async openPlan(vm, from, to) {
    set({ plan: { vm, from, to, running: true } });
    const r = await ferry().invoke('migrations:preflight', { vm, from, to });
    const cur = get().plan;
    if (!cur || cur.vm !== vm || cur.to !== to) return;
    set({ plan: r.ok ? { vm, from, to, preflight: r.value } : { vm, from, to, preflightError: r.error.message } });
  },

  closePlan() {
    set({ plan: undefined });
  },

  async start(plan) {
    const r = await ferry().invoke('migrations:start', plan);
    if (!r.ok) {
      get().toast(`Migration not started: ${r.error.message}`, 'error');
      return false;
    }
    const seen = get().migrations[r.value.id] !== undefined;
    set((s) => ({
      migrations: s.migrations[r.value.id] ? s.migrations : { ...s.migrations, [r.value.id]: emptyEntry(r.value) },
      order: s.order.includes(r.value.id) ? s.order : [...s.order, r.value.id],
      selected: r.value.id,
      plan: undefined,
      // the migration just started is what the user looks at, even from an open timeline
      view: { kind: 'live' },
    }));
    // Its migration:started event comes first; if it was missed, the history covers what it brought.
    if (!seen) void get().hydrate(r.value.id);
    return true;
  },

  async watch(vm) {
    // A QEMU Ferry did not start is reached by the socket the board found it through.
    const r = await ferry().invoke('migrations:attach', { hostId: vm.hostId, vm: vm.name, ...(vm.manager === 'qemu' ? { qmpSocket: vm.qmpSocket } : {}) });
    if (!r.ok) {
      get().toast(`Cannot watch ${vm.name}: ${r.error.message}`, 'error');
      return false;
    }
    set((s) => ({
      migrations: s.migrations[r.value.id] ? s.migrations : { ...s.migrations, [r.value.id]: emptyEntry(r.value) },
      order: s.order.includes(r.value.id) ? s.order : [...s.order, r.value.id],
      selected: r.value.id,
    }));
    get().toast(`Watching ${vm.name} on ${vm.hostId}: its next migration is recorded`, 'info');
    return true;
  },

  async control(id, control) {
    const r = await ferry().invoke('migrations:control', { id, control });
    const text = `${control.action}${'bytesPerSecond' in control ? ` ${(control.bytesPerSecond / 1e6).toFixed(0)} MB/s` : ''}${'ms' in control ? ` ${control.ms} ms` : ''}`;
    set((s) => {
      const e = s.migrations[id];
      if (!e) return s;
      const log: LogEntry = r.ok ? { t: Date.now(), kind: 'control', text: `${text}: done` } : { t: Date.now(), kind: 'error', text: `${text}: ${r.error.message}` };
      return { migrations: { ...s.migrations, [id]: { ...e, log: [...e.log, log] } } };
    });
    if (!r.ok) get().toast(r.error.message, 'error');
    return r.ok ? undefined : r.error;
  },

  select(id) {
    set({ selected: id });
  },

  async addHost(input, edit = false) {
    const ssh = {
      host: input.host,
      ...(input.user ? { user: input.user } : {}),
      ...(input.port ? { port: input.port } : {}),
      ...(input.identityFile ? { identityFile: input.identityFile } : {}),
      ...(input.proxyJump ? { proxyJump: input.proxyJump } : {}),
    };
    const r = await ferry().invoke(edit ? 'hosts:update' : 'hosts:add', { id: input.id, transport: { kind: 'ssh', ssh } });
    if (!r.ok) return r.error;
    await get().connectHost(input.id);
    return undefined;
  },

  async connectHost(id, secret) {
    const r = await ferry().invoke('hosts:connect', { id, ...(secret ? { passphrase: secret.passphrase, remember: secret.remember } : {}) });
    if (!r.ok) {
      const d = r.error.details ?? {};
      if (r.error.code === 'SSH_HOST_KEY_UNKNOWN' && typeof d.fingerprint === 'string') {
        set({ trust: { hostId: id, fingerprint: d.fingerprint, keyType: String(d.keyType ?? ''), host: `${String(d.host ?? '')}:${String(d.port ?? '')}` } });
      } else if (r.error.code === 'SSH_PASSPHRASE_REQUIRED') {
        set({ passphrase: { hostId: id, keys: Array.isArray(d.keys) ? d.keys.map(String) : [], wrong: d.wrong === true } });
        const st = await ferry().invoke('secrets:status', {});
        if (st.ok) set((s) => (s.passphrase?.hostId === id ? { passphrase: { ...s.passphrase, canRemember: st.value } } : s));
      } else {
        get().toast(r.error.message, 'error');
      }
    } else if (get().passphrase?.hostId === id) {
      set({ passphrase: undefined });
    }
    await get().refresh();
  },

  dismissPassphrase() {
    set({ passphrase: undefined });
  },

  async removeHost(id) {
    const r = await ferry().invoke('hosts:remove', { id });
    if (!r.ok) get().toast(r.error.message, 'error');
    await get().refresh();
  },

  async trustKey() {
    const t = get().trust;
    if (!t) return;
    set({ trust: undefined });
    const r = await ferry().invoke('hosts:trust-key', { id: t.hostId, fingerprint: t.fingerprint });
    if (!r.ok) get().toast(r.error.message, 'error');
    else get().toast(`Trusted ${t.fingerprint} for ${t.hostId}`, 'ok');
    await get().refresh();
  },

  dismissTrust() {
    set({ trust: undefined });
  },

  toast(text, kind = 'info') {
    const id = toastId++;
    set((s) => ({ toasts: [...s.toasts.slice(-3), { id, text, kind }] }));
    setTimeout(() => set((s) => ({ toasts: s.toasts.filter((t) => t.id !== id) })), kind === 'error' ? 9000 : 5000);
  },

  async guestCommand(hostId, vm, command) {
    const r = await ferry().invoke('guest:command', { hostId, vm, command });
    if (r.ok) get().toast(`${vm}: ${command} → ok`, 'ok');
    else get().toast(`${vm}: ${r.error.message}`, 'error');
  },

  async copyDiagnostics() {
    const r = await ferry().invoke('diagnostics:get', {});
    if (!r.ok) {
      get().toast(`Diagnostics: ${r.error.message}`, 'error');
      return;
    }
    try {
      await navigator.clipboard.writeText(r.value.text);
      get().toast(`Diagnostics copied (${r.value.text.split('\n').length} lines)${r.value.logFile ? `; the full log is ${r.value.logFile}` : ''}`, 'ok');
    } catch {
      // The browser refused the clipboard (no permission, not focused): hand it over as a file.
      downloadText('ferry-diagnostics.txt', r.value.text, 'text/plain');
      get().toast('Clipboard refused: diagnostics downloaded as ferry-diagnostics.txt', 'info');
    }
  },

  toggleTheme() {
    const theme = get().theme === 'light' ? 'dark' : 'light';
    localStorage.setItem('ferry-theme', theme);
    set({ theme });
  },

  applyStarted(summary) {
    set((s) => (s.migrations[summary.id] ? s : { migrations: { ...s.migrations, [summary.id]: emptyEntry(summary) }, order: [...s.order, summary.id] }));
  },

  applySample(id, sample) {
    set((s) => {
      const e = s.migrations[id];
      if (!e) return s;
      const prev = e.samples.at(-1);
      if (prev && sample.t <= prev.t) return s; // already have it (e.g. the summary's last sample)
      // O(1): a new ring sharing the old one's items (which it never changes), not a copy of the hour.
      return { migrations: { ...s.migrations, [id]: { ...e, samples: pushTo(e.samples, sample, RING) } } };
    });
  },

  async hydrate(id) {
    if (hydrating.has(id)) return;
    hydrating.add(id);
    try {
      const r = await ferry().invoke('migrations:history', { id });
      set((s) => {
        const cur = s.migrations[id];
        if (!cur) return s;
        if (!r.ok) return { migrations: { ...s.migrations, [id]: { ...cur, log: [...cur.log, { t: Date.now(), kind: 'error', text: `history not loaded (the charts start here): ${r.error.message}` }] } } };
        return { migrations: { ...s.migrations, [id]: mergeHistory(entryFromHistory(r.value), cur) } };
      });
    } finally {
      hydrating.delete(id);
    }
  },

  async resync() {
    const { migrations } = get();
    await Promise.all(Object.keys(migrations).filter((id) => !migrations[id]!.final).map((id) => get().hydrate(id)));
  },

  applyPhase(id, phase, from, reason, t = Date.now()) {
    set((s) => {
      const e = s.migrations[id];
      if (!e) return s;
      if (e.phases.some((p) => p.phase === phase && p.t === t)) return s; // already have it (from the history)
      return {
        migrations: {
          ...s.migrations,
          [id]: {
            ...e,
            summary: { ...e.summary, phase },
            phases: [...e.phases, { phase, t }],
            log: [...e.log, logLine(reason ? { type: 'phase', t, phase, from, reason } : { type: 'phase', t, phase, from })!],
          },
        },
      };
    });
  },

  applyRecord(id, record) {
    const line = logLine(record);
    if (!line) return;
    set((s) => {
      const e = s.migrations[id];
      if (!e) return s;
      const key = logKey(line);
      if (e.log.some((l) => logKey(l) === key)) return s; // already have it (from the history)
      // In time order: a late event (e.g. one the daemon reported with its own timestamp) goes where it belongs.
      const log = [...e.log, line].sort((a, b) => a.t - b.t);
      return { migrations: { ...s.migrations, [id]: { ...e, log } } };
    });
  },

  applyEnded(id, final) {
    const e = get().migrations[id];
    set((s) => {
      const cur = s.migrations[id];
      if (!cur) return s;
      if (cur.final) return { migrations: { ...s.migrations, [id]: { ...cur, final } } }; // its end line came with the history
      const text = `${final.outcome}${final.reason ? `: ${final.reason}` : ''}${final.downtimeMs !== undefined ? `, downtime ${final.downtimeMs} ms` : ''}`;
      return { migrations: { ...s.migrations, [id]: { ...cur, final, summary: { ...cur.summary, phase: final.outcome }, log: [...cur.log, { t: Date.now(), kind: 'end', text }] } } };
    });
    if (e) get().toast(`${e.summary.plan.vm as string}: migration ${final.outcome}${final.downtimeMs !== undefined ? ` (downtime ${final.downtimeMs} ms)` : ''}${final.reason ? ` — ${final.reason}` : ''}`, final.outcome === 'completed' ? 'ok' : 'error');
    void get().refresh();
  },
}));

/** Subscribes the store to the service's events; returns the unsubscribe. */
export function wireEvents(): () => void {
  const api = ferry();
  const st = useConsole.getState;
  const offs = [
    api.on('migration:sample', (p) => {
      if (!st().migrations[p.id]) void st().refresh();
      st().applySample(p.id, p.sample as unknown as MigrationSample);
    }),
    api.on('migration:started', (p) => st().applyStarted(p)),
    api.on('migration:phase', (p) => st().applyPhase(p.id, p.phase, p.from, p.reason, p.t)),
    api.on('migration:ended', (p) => st().applyEnded(p.id, p.final as unknown as MigrationFinal)),
    api.on('migration:record', (p) => st().applyRecord(p.id, p.record as unknown as TimelineRecord)),
    api.on('hosts:state', () => void st().refresh()),
    api.on('evacuation:progress', (p) => st().applyEvacuation(p)),
    // The desktop shell's menu and native open dialog.
    api.on('ui:open-timeline', (p) => void st().openTimelineText(p.name, p.text)),
    api.on('ui:command', (p) => {
      if (p.command === 'toggle-theme') st().toggleTheme();
      if (p.command === 'start-lab') void st().startLab();
      if (p.command === 'run-demo') void st().runDemo();
      if (p.command === 'export-report') st().exportReport();
    }),
  ];
  return () => offs.forEach((o) => o());
}
