// @vitest-environment happy-dom
import { describe, expect, it } from 'vitest';
import { useConsole } from './console-store';
import type { MigrationEntry } from './console-store';

const t0 = 1_000_000;
const summary = { id: 'm1', plan: { vm: 'demo', from: 'lab-a', to: 'lab-b' }, startedAt: t0, timeline: '/tmp/m1.ferry.jsonl', driver: 'qmp', controls: ['cancel' as const] };
let history = 0;
// The service as far as a refresh talks to it: the migration has ended there.
(window as unknown as { ferry: unknown }).ferry = {
  invoke: (channel: string) => {
    switch (channel) {
      case 'lab:status': return Promise.resolve({ ok: true, value: { running: true, vms: 1, netns: false } });
      case 'migrations:list': return Promise.resolve({ ok: true, value: [{ ...summary, phase: 'cancelled' }] });
      case 'migrations:history':
        history++;
        return Promise.resolve({ ok: true, value: {
          summary: { ...summary, phase: 'cancelled' }, samples: [], source: 'memory',
          records: [
            { type: 'phase', t: t0 + 100, phase: 'precopy', from: 'setup' },
            { type: 'phase', t: t0 + 500, phase: 'cancelled', from: 'precopy' },
            { type: 'end', t: t0 + 510, outcome: 'cancelled' },
          ],
        } });
      default: return Promise.resolve({ ok: true, value: [] });
    }
  },
  on: () => () => {},
};

describe('console store: a missed end heals at the next refresh', () => {
  it('takes the story again of a migration the service says ended, when the console never heard the end', async () => {
    const entry: MigrationEntry = { summary: { ...summary, phase: 'precopy' }, samples: [] as unknown as MigrationEntry['samples'], phases: [{ phase: 'setup', t: t0 }, { phase: 'precopy', t: t0 + 100 }], log: [] };
    useConsole.setState({ migrations: { m1: entry }, order: ['m1'] });
    await useConsole.getState().refresh();
    await new Promise((r) => setTimeout(r, 0));
    const m = useConsole.getState().migrations.m1!;
    expect(history).toBe(1);
    expect(m.summary.phase).toBe('cancelled');
    expect(m.final?.outcome).toBe('cancelled');
    // Once it has its end, a refresh leaves it be.
    await useConsole.getState().refresh();
    await new Promise((r) => setTimeout(r, 0));
    expect(history).toBe(1);
  });
});
