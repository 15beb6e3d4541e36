// @vitest-environment happy-dom
import { readFileSync } from 'node:fs';
import path from 'node:path';
import { beforeEach, describe, expect, it } from 'vitest';
import { act } from 'react';
import { createRoot } from 'react-dom/client';
import { useConsole } from '../../renderer/store/console-store';
import { parseTimeline } from '../../shared/model/timeline';
import type { TimelineRecord } from '../../shared/model/timeline';
import { chartSpecs, entryFromTimeline, passStarts, phaseSpans, rowsOf } from '../../shared/report/picture';
import type { MigrationEntry } from '../../shared/report/picture';
import type { MigrationSample } from '../../shared/model/migration';
import { cursorValues, TimelineView } from '../../renderer/views/timeline-view';

const text = readFileSync(path.resolve('test/fixtures/timelines/postcopy.ferry.jsonl'), 'utf8');
const parsed = parseTimeline(text);

/** What a console that watched the migration live holds: its records replayed as the service's events. */
function liveEntryOf(records: readonly TimelineRecord[]): MigrationEntry {
  const h = parsed.header!;
  const st = useConsole.getState();
  st.applyStarted({ id: h.migrationId, plan: h.plan as unknown as Record<string, unknown>, phase: 'preflight', startedAt: h.createdAt, timeline: '/x/postcopy.ferry.jsonl' });
  for (const r of records) {
    if (r.type === 'phase') st.applyPhase(h.migrationId, r.phase, r.from ?? 'preflight', r.reason, r.t);
    if (r.type === 'sample') {
      const { type: _t, ...s } = r;
      st.applySample(h.migrationId, s as MigrationSample);
    }
    if (r.type === 'end') {
      const { type: _t, t: _tt, ...f } = r;
      st.applyEnded(h.migrationId, f);
    }
  }
  return useConsole.getState().migrations[h.migrationId]!;
}

const picture = (e: MigrationEntry) => {
  const start = e.summary.startedAt;
  const rows = rowsOf(e.samples, start);
  // The live entry's rows are a ring, the replay's an array: the same rows either way.
  return { rows: Array.from(rows), phases: phaseSpans(e.phases, start, e.samples.at(-1)!.t), passes: passStarts(e.samples, start), specs: chartSpecs(e, rows), final: e.final };
};

describe('live and replay are the same picture', () => {
  beforeEach(() => useConsole.setState({ migrations: {}, order: [], timelines: [], view: { kind: 'live' } }));

  it('a replayed timeline gives the charts exactly the rows, bands, markers and specs the live view had', () => {
    const live = liveEntryOf(parsed.records);
    const replay = entryFromTimeline(parsed);
    expect(live.samples).toHaveLength(parsed.samples.length);
    expect(picture(replay)).toEqual(picture(live));
  });

  it('a sample delivered twice (summary, then event) is kept once', () => {
    const live = liveEntryOf(parsed.records);
    const n = live.samples.length;
    useConsole.getState().applySample(live.summary.id, live.samples.at(-1)!);
    expect(useConsole.getState().migrations[live.summary.id]!.samples).toHaveLength(n);
  });
});

/** The service, as far as a console joining late talks to it: the history reply is released by the test. */
let releaseHistory: ((h: unknown) => void) | undefined;
(window as unknown as { ferry: unknown }).ferry = {
  invoke: (channel: string) => {
    if (channel === 'migrations:history') return new Promise((resolve) => (releaseHistory = (h) => resolve({ ok: true, value: h })));
    return Promise.resolve(channel === 'lab:status' ? { ok: true, value: { running: false, vms: 0, netns: false } } : { ok: true, value: [] });
  },
  on: () => () => {},
};

/** What the service answers `migrations:history` with once the first `k` records have happened. */
function historyAt(k: number) {
  const h = parsed.header!;
  const done = parsed.records.slice(1, k);
  const samples = done.filter((r) => r.type === 'sample').map(({ type: _t, ...x }) => x);
  const phase = [...done].reverse().find((r) => r.type === 'phase') as { phase: string } | undefined;
  const end = done.find((r) => r.type === 'end') as { outcome: string } | undefined;
  return {
    summary: { id: h.migrationId, plan: h.plan, phase: end?.outcome ?? phase?.phase ?? 'preflight', startedAt: h.createdAt, timeline: '/x/postcopy.ferry.jsonl', ...(samples.length ? { last: samples.at(-1) } : {}), ...(end ? { final: end } : {}) },
    samples,
    records: done.filter((r) => r.type !== 'sample' && r.type !== 'guest'),
    source: 'memory',
  };
}

/** The service's events for these records, as a console receives them. */
function deliver(records: readonly TimelineRecord[]): void {
  const st = useConsole.getState();
  const id = parsed.header!.migrationId;
  for (const r of records) {
    if (r.type === 'phase') st.applyPhase(id, r.phase, r.from ?? 'preflight', r.reason, r.t);
    if (r.type === 'sample') {
      const { type: _t, ...x } = r;
      st.applySample(id, x as MigrationSample);
    }
    if (r.type === 'end') {
      const { type: _t, t: _tt, ...f } = r;
      st.applyEnded(id, f);
    }
  }
}

describe('a console that joins late (a tab opened or reloaded mid-migration)', () => {
  beforeEach(() => useConsole.setState({ migrations: {}, order: [], timelines: [], view: { kind: 'live' } }));

  // [where it joins, events that arrive while the history is on its way: already in it / newer than it]
  const cases: [number, number, number][] = [[0.1, 0, 0], [0.4, 6, 0], [0.5, 0, 9], [0.7, 5, 12], [0.95, 3, 3], [1, 4, 0]];
  for (const [at, older, newer] of cases) {
    it(`draws what a console that watched from the start draws (joins at ${at * 100}%, ${older} events already in the history and ${newer} newer arrive meanwhile)`, async () => {
      const watched = liveEntryOf(parsed.records);
      const want = picture(watched);
      const wantLog = watched.log;
      useConsole.setState({ migrations: {}, order: [] });
      const k = Math.max(2, Math.round(parsed.records.length * at));
      const history = historyAt(k);
      // migrations:list gave it the summary: an entry with the current phase and last sample only
      useConsole.getState().applyStarted(history.summary as never);
      const id = parsed.header!.migrationId;
      const hydrated = useConsole.getState().hydrate(id);
      deliver(parsed.records.slice(Math.max(1, k - older), k + newer));
      releaseHistory!(history);
      await hydrated;
      deliver(parsed.records.slice(k + newer));
      const got = useConsole.getState().migrations[id]!;
      expect(got.samples).toHaveLength(parsed.samples.length);
      expect(picture(got)).toEqual(want);
      expect(got.phases).toEqual(watched.phases);
      expect(got.summary.phase).toBe(watched.summary.phase);
      // every line once; every line the watching console has, this one has too
      const keys = got.log.map((l) => `${l.kind}|${l.t}|${l.text}`);
      expect(new Set(keys).size).toBe(keys.length);
      for (const l of wantLog.filter((x) => x.kind !== 'end')) expect(keys).toContain(`${l.kind}|${l.t}|${l.text}`);
      expect(got.log.filter((l) => l.kind === 'end')).toHaveLength(1);
      // and the story the history told besides phases: QEMU's events, controls, policies, notes
      expect(got.log.filter((l) => l.kind === 'event')).toHaveLength(parsed.records.slice(1, k).filter((r) => r.type === 'event').length);
    });
  }

  it('says so in its log when the history cannot be had, and draws from there on', async () => {
    const history = historyAt(40);
    useConsole.getState().applyStarted(history.summary as never);
    const id = parsed.header!.migrationId;
    (window as unknown as { ferry: { invoke: unknown } }).ferry.invoke = () => Promise.resolve({ ok: false, error: { code: 'NOT_FOUND', message: 'no migration with id "x"' } });
    await useConsole.getState().hydrate(id);
    expect(useConsole.getState().migrations[id]!.log.at(-1)!.text).toBe('history not loaded (the charts start here): no migration with id "x"');
  });
});

describe('the timeline viewer', () => {
  (globalThis as { IS_REACT_ACT_ENVIRONMENT?: boolean }).IS_REACT_ACT_ENVIRONMENT = true;
  beforeEach(() => useConsole.setState({ timelines: [], view: { kind: 'live' }, toasts: [] }));

  it('opens a timeline, refuses what is not one, and says when one is truncated', () => {
    expect(useConsole.getState().openTimelineText('x.jsonl', '{"type":"sample"}\n')).toBe(false);
    expect(useConsole.getState().toasts.at(-1)!.text).toContain('x.jsonl is not a Ferry timeline');
    expect(useConsole.getState().openTimelineText('p.ferry.jsonl', text)).toBe(true);
    const open = useConsole.getState().timelines[0]!;
    expect(useConsole.getState().view).toEqual({ kind: 'timeline', key: open.key });
    expect(useConsole.getState().openTimelineText('cut.ferry.jsonl', text.slice(0, 5000))).toBe(true);
    expect(useConsole.getState().toasts.at(-1)!.text).toMatch(/cut.ferry.jsonl is truncated: showing its \d+ complete records/);

    const el = document.createElement('div');
    document.body.append(el);
    const root = createRoot(el);
    act(() => root.render(<TimelineView open={useConsole.getState().timelines[1]!} />));
    expect(el.querySelector('[data-testid=truncated]')?.textContent).toContain('truncated');
    act(() => root.render(<TimelineView open={open} />));
    expect(el.querySelector('[data-testid=truncated]')).toBeNull();
    expect(el.querySelector('[data-testid=downtime]')?.textContent).toBe('61 ms');
    // cursor at 0: the first sample (the panel never shows an empty moment)
    expect(el.querySelector('[data-field=time] dd')?.textContent).toBe(`+${((parsed.samples[0]!.t - parsed.header!.createdAt) / 1000).toFixed(2)} s`);
    act(() => root.unmount());
    el.remove();
  });

  it('the cursor panel lists every value the sample has', () => {
    const s = parsed.samples.find((x) => x.guest && x.postcopyRequests !== undefined)!;
    const ids = cursorValues(s, parsed.header!.createdAt).map((v) => v.id);
    expect(ids).toEqual(expect.arrayContaining(['time', 'phase', 'pass', 'dirty', 'transfer', 'remaining', 'transferred', 'qemu-downtime', 'stall', 'requests']));
    expect(cursorValues({ t: 0, elapsedMs: 0, status: 'setup', phase: 'setup' }, 0).map((v) => v.id)).not.toContain('stall');
  });
});

describe('live chart axis', () => {
  it('the time axis end moves in steps, not on every sample, and always covers the last one', async () => {
    const { xEndOf } = await import('../../renderer/charts/time-chart');
    expect(xEndOf(0)).toBe(1);
    expect(xEndOf(3600)).toBe(4000);
    expect(xEndOf(3600.1)).toBe(4000);
    expect(xEndOf(12.3)).toBe(14);
    for (const t of [1.01, 7.7, 99.9, 1234, 35_999]) expect(xEndOf(t)).toBeGreaterThanOrEqual(t);
  });
});
