// @vitest-environment happy-dom
import { describe, expect, it, beforeEach } from 'vitest';
import { act } from 'react';
import { createRoot } from 'react-dom/client';
import { MigrationView } from './migration-view';
import { passStarts, phaseSpans, rowsOf } from '../../shared/report/picture';
import { RING, useConsole } from '../store/console-store';
import type { MigrationEntry } from '../store/console-store';
import type { MigrationSample } from '../../shared/model/migration';
import type { MigrationControlAction } from '../../shared/contract';

const t0 = 1_000_000;
const sample = (i: number, extra: Partial<MigrationSample> = {}): MigrationSample => ({
  t: t0 + i * 100, elapsedMs: i * 100, status: 'active', phase: 'precopy', pass: 1 + Math.floor(i / 10),
  remainingBytes: 1e8 - i * 1e6, totalBytes: 1e8, transferredBytes: i * 1e6, dirtyRate: 2e7, transferRate: 5e7, expectedDowntimeMs: 300, ...extra,
});

/** What the QMP driver offers for a Ferry VM on a QEMU with out-of-band QMP. */
const QMP_CONTROLS = ['cancel', 'set-bandwidth', 'set-downtime', 'postcopy', 'stop-vm', 'pause-postcopy', 'recover', 'continue'] satisfies MigrationControlAction[];

function entry(plan: Record<string, unknown>, phase: MigrationEntry['summary']['phase'], samples: MigrationSample[], controls: MigrationControlAction[] = QMP_CONTROLS): MigrationEntry {
  return {
    summary: { id: 'm1', plan: { vm: 'demo', from: 'lab-a', to: 'lab-b', ...plan }, phase, startedAt: t0, timeline: '/tmp/x', driver: 'qmp', controls },
    samples,
    phases: [{ phase: 'setup', t: t0 }, { phase: 'precopy', t: t0 + 50 }],
    log: [],
  };
}

describe('migration view helpers', () => {
  it('turns samples into chart rows in seconds since start, keeping absent fields absent', () => {
    const rows = rowsOf([sample(0), sample(5, { dirtyRate: undefined })], t0);
    expect(rows[0]).toMatchObject({ t: 0, dirty: 2e7, xfer: 5e7, remaining: 1e8, qemu: 300 });
    expect(rows[1]!.t).toBeCloseTo(0.5);
    expect(rows[1]).not.toHaveProperty('dirty');
  });

  it('finds pass starts and phase spans', () => {
    const samples = Array.from({ length: 25 }, (_, i) => sample(i));
    expect(passStarts(samples, t0)).toEqual([1, 2]);
    const spans = phaseSpans(entry({}, 'precopy', samples).phases, t0, t0 + 2400);
    expect(spans).toEqual([{ phase: 'setup', from: 0, to: 0.05 }, { phase: 'precopy', from: 0.05, to: 2.4 }]);
  });
});

describe('console store', () => {
  beforeEach(() => useConsole.setState({ migrations: { m1: entry({}, 'precopy', []) }, order: ['m1'] }));

  it('replaces the sample buffer on each sample (never mutates) and caps it at one hour', () => {
    const before = useConsole.getState().migrations.m1!.samples;
    useConsole.getState().applySample('m1', sample(1));
    const after = useConsole.getState().migrations.m1!.samples;
    expect(after).not.toBe(before);
    expect(before).toHaveLength(0);
    expect(after).toHaveLength(1);
    useConsole.setState({ migrations: { m1: { ...useConsole.getState().migrations.m1!, samples: Array.from({ length: RING }, (_, i) => sample(i)) } } });
    useConsole.getState().applySample('m1', sample(RING));
    const capped = useConsole.getState().migrations.m1!.samples;
    expect(capped).toHaveLength(RING);
    expect(capped.at(-1)!.elapsedMs).toBe(RING * 100);
  });

  it('records phases and the end in the log', () => {
    useConsole.getState().applyPhase('m1', 'stop-and-copy', 'precopy');
    expect(useConsole.getState().migrations.m1!.summary.phase).toBe('stop-and-copy');
    expect(useConsole.getState().migrations.m1!.log.at(-1)!.text).toBe('precopy → stop-and-copy');
  });

  it('puts hypervisor events, gaps, notes and policy decisions in the live log, in time order, each once', () => {
    const st = () => useConsole.getState();
    st().applyRecord('m1', { type: 'event', t: t0 + 300, side: 'source', event: 'MIGRATION_PASS', data: { pass: 2 } });
    st().applyRecord('m1', { type: 'policy', t: t0 + 200, policy: 'auto-postcopy', action: 'postcopy', why: 'not converging' });
    st().applyRecord('m1', { type: 'event', t: t0 + 300, side: 'source', event: 'MIGRATION_PASS', data: { pass: 2 } }); // again, as a history would bring it
    st().applyRecord('m1', { type: 'sample', ...sample(3) }); // not a log line
    expect(st().migrations.m1!.log.map((l) => [l.kind, l.text])).toEqual([
      ['policy', 'policy auto-postcopy: postcopy (not converging)'],
      ['event', 'source: MIGRATION_PASS {"pass":2}'],
    ]);
    st().applyRecord('nope', { type: 'note', t: t0, text: 'a migration this console does not know' });
    expect(st().migrations.nope).toBeUndefined();
  });
});

describe('MigrationView', () => {
  (globalThis as { IS_REACT_ACT_ENVIRONMENT?: boolean }).IS_REACT_ACT_ENVIRONMENT = true;
  const render = (id: string): string => {
    const el = document.createElement('div');
    document.body.append(el);
    const root = createRoot(el);
    act(() => root.render(<MigrationView id={id} />));
    const html = el.innerHTML;
    act(() => root.unmount());
    el.remove();
    return html;
  };

  it('offers only the controls QEMU accepts now, each disabled one saying why', () => {
    useConsole.setState({ migrations: { m1: entry({ mode: 'precopy' }, 'precopy', [sample(0), sample(1)]) }, order: ['m1'] });
    const html = render('m1');
    expect(html).toMatch(/<button[^>]*title="Cancel"[^>]*>Cancel<\/button>/);
    expect(html).toMatch(/<button[^>]*disabled=""[^>]*title="Not now: postcopy was not enabled in the plan"[^>]*>Switch to postcopy<\/button>/);
    expect(html).toMatch(/title="Not now: only when postcopy is paused"/);
    expect(html).toContain('pass 1');
  });

  it('shows the final figures and disables every control once ended', () => {
    const e = entry({ mode: 'postcopy' }, 'completed', [sample(0)]);
    e.final = { outcome: 'completed', downtimeMs: 42, totalTimeMs: 2400, passes: 3, verify: { ok: true, bad: 0, stale: 0, pages: 10 } };
    useConsole.setState({ migrations: { m1: e }, order: ['m1'] });
    const html = render('m1');
    expect(html).toContain('data-testid="downtime">42 ms');
    expect(html).toContain('verified');
    expect(html.match(/title="Not now: the migration has ended"/g)).toHaveLength(5);
  });

  it('offers exactly the controls the migration\'s driver lists', () => {
    // A driver without postcopy recovery: no Pause or Recover buttons at all (not merely disabled).
    useConsole.setState({ migrations: { m1: entry({ mode: 'postcopy' }, 'postcopy', [sample(0)], ['cancel', 'set-bandwidth', 'postcopy', 'stop-vm']) }, order: ['m1'] });
    const html = render('m1');
    expect(html).toContain('>Cancel</button>');
    expect(html).toContain('>Switch to postcopy</button>');
    expect(html).not.toContain('Pause postcopy');
    expect(html).not.toContain('>Recover<');
    expect(html).toContain('aria-label="bandwidth in MB/s"');
    expect(html).not.toContain('aria-label="downtime limit in ms"');
    // Continue only where the plan pauses before switchover
    expect(html).not.toContain('>Continue<');
    useConsole.setState({ migrations: { m1: entry({ pauseBeforeSwitchover: true }, 'stop-and-copy', [sample(0)]) }, order: ['m1'] });
    expect(render('m1')).toMatch(/<button[^>]*title="Continue"[^>]*>Continue<\/button>/);
  });

  it('shows a watched migration (attach) with no controls', () => {
    useConsole.setState({ migrations: { m1: entry({}, 'precopy', [sample(0)], []) }, order: ['m1'] });
    const html = render('m1');
    expect(html).not.toContain('aria-label="migration controls"');
    expect(html).toContain('data-testid="watch-only"');
  });
});
