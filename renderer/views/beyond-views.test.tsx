// @vitest-environment happy-dom
import { describe, expect, it } from 'vitest';
import { act } from 'react';
import { createRoot } from 'react-dom/client';
import { BeyondPanel, beyondPlanFields, storageCopyOffered, NO_BEYOND } from './beyond-views';
import { chartSpecs, rowsOf } from '../../shared/report/picture';
import type { MigrationEntry } from '../store/console-store';
import type { MigrationSample } from '../../shared/model/migration';

const t0 = 1_000_000;
const s = (i: number, storage?: MigrationSample['storage']): MigrationSample => ({ t: t0 + i * 1000, elapsedMs: i * 1000, status: 'none', phase: 'storage-copy', ...(storage ? { storage } : {}) });

(globalThis as { IS_REACT_ACT_ENVIRONMENT?: boolean }).IS_REACT_ACT_ENVIRONMENT = true;
function render(node: React.ReactNode): string {
  const el = document.createElement('div');
  document.body.append(el);
  const root = createRoot(el);
  act(() => root.render(node));
  const html = el.innerHTML;
  act(() => root.unmount());
  el.remove();
  return html;
}

describe('plan options for storage and transport', () => {
  it('turn into plan fields, or say what is wrong', () => {
    expect(beyondPlanFields(NO_BEYOND)).toEqual({});
    expect(beyondPlanFields({ copyStorage: true, storageBandwidth: '25', tunnel: true })).toEqual({ copyStorage: true, storageBandwidth: 25_000_000, transport: 'ssh-tunnel' });
    expect(beyondPlanFields({ copyStorage: true, storageBandwidth: '-1', tunnel: false })).toMatch(/storage bandwidth must be a positive/);
    // the storage bandwidth only counts with the copy
    expect(beyondPlanFields({ copyStorage: false, storageBandwidth: '-1', tunnel: false })).toEqual({});
  });

  it('know when preflight offers the storage copy', () => {
    const check = (status: 'pass' | 'fail', fix?: string) => ({ ok: status === 'pass', tookMs: 1, checks: [{ id: 'storage', title: 'Disks', status, reason: 'x', ...(fix ? { fix } : {}) }] });
    expect(storageCopyOffered(check('fail', 'migrate with copyStorage (--copy-storage): 1 disk(s)'))).toBe(true);
    expect(storageCopyOffered(check('fail', 'put the files on shared storage at the same path'))).toBe(false);
    expect(storageCopyOffered(check('pass'))).toBe(false);
  });
});

describe('BeyondPanel', () => {
  const entry = (plan: Record<string, unknown>, samples: MigrationSample[], transport?: string): MigrationEntry => ({
    summary: { id: 'm1', plan: { vm: 'demo', from: 'lab-a', to: 'lab-b', ...plan }, phase: 'storage-copy', startedAt: t0, timeline: '/tmp/x', ...(transport ? { transport: transport as 'tcp' } : {}) },
    samples, phases: [], log: [],
  });

  it('storage figures become chart rows and the storage charts (live, replay and report alike); absent, no storage charts', () => {
    const samples = [s(0), s(1, { copiedBytes: 5e6, totalBytes: 2e7, remainingBytes: 1.5e7, ready: false, disks: 1, rate: 5e6 })];
    const rows = rowsOf(samples, t0);
    expect(rows[0]).toEqual({ t: 0 });
    expect(rows[1]).toEqual({ t: 1, diskCopied: 5e6, diskTotal: 2e7, diskRate: 5e6 });
    const ids = chartSpecs(entry({ copyStorage: true }, samples), rows).map((c) => c.id);
    expect(ids.slice(0, 2)).toEqual(['storage', 'storage-rates']);
    expect(chartSpecs(entry({}, [s(0)]), rowsOf([s(0)], t0)).map((c) => c.id)).not.toContain('storage');
  });

  it('says which transport carries the stream and shows the storage copy figures', () => {
    const storage = { copiedBytes: 8e6, totalBytes: 2e7, remainingBytes: 1.2e7, ready: false, disks: 1, rate: 4e6, dirtyRate: 1e6 };
    const html = render(<BeyondPanel entry={entry({ copyStorage: true, transport: 'ssh-tunnel' }, [s(0, storage), s(1, storage)], 'ssh-tunnel')} />);
    expect(html).toContain('Stream: inside SSH');
    expect(html).toMatch(/Disks copied<\/dt><dd>8(\.0)? MB \/ 20(\.0)? MB/);
    expect(html).toContain('not yet');
    const plain = render(<BeyondPanel entry={entry({}, [s(0)])} />);
    expect(plain).toContain('Stream: TCP, host to host');
    expect(plain).not.toContain('Disks copied');
  });
});
