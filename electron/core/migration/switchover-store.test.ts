import { afterEach, describe, expect, it } from 'vitest';
import { mkdtempSync, readFileSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { MAX_AGE_MS, SwitchoverStore, pairKey, prune } from './switchover-store';

const dirs: string[] = [];
const tmp = () => {
  const d = mkdtempSync(path.join(tmpdir(), 'ferry-switchovers-'));
  dirs.push(d);
  return path.join(d, 'switchovers.json');
};
afterEach(() => {
  for (const d of dirs.splice(0)) rmSync(d, { recursive: true, force: true });
});

describe('learned switchovers, kept in the config dir', () => {
  it('written atomically (0600), read by the next process', async () => {
    const file = tmp();
    const a = new SwitchoverStore(file);
    const at = Date.now();
    a.set(pairKey('hv1', 'hv2'), [{ bytes: 20e6, downtimeMs: 12, linkRate: 1.7e9, at }]);
    await a.flushed();
    expect(statSync(file).mode & 0o777).toBe(0o600);
    const b = new SwitchoverStore(file);
    expect(b.get('hv1->hv2')).toEqual([{ bytes: 20e6, downtimeMs: 12, linkRate: 1.7e9, at }]);
    expect(b.get('hv2->hv1')).toBeUndefined();
  });

  it('two processes: each write merges what the other wrote', async () => {
    const file = tmp();
    const a = new SwitchoverStore(file);
    const b = new SwitchoverStore(file);
    const at = Date.now();
    a.set('hv1->hv2', [{ bytes: 20e6, downtimeMs: 12, linkRate: 1.7e9, at }]);
    await a.flushed();
    b.set('hv1->hv2', [{ bytes: 21e6, downtimeMs: 13, linkRate: 1.6e9, at: at + 1 }]);
    await b.flushed();
    expect(new SwitchoverStore(file).get('hv1->hv2')?.map((p) => p.at)).toEqual([at, at + 1]);
  });

  it('entries age out: after 30 days, and when the link changes', () => {
    const now = 100 * 86_400_000;
    const pts = [
      { bytes: 1e7, downtimeMs: 10, linkRate: 1e9, at: now - MAX_AGE_MS - 1 },
      { bytes: 1e7, downtimeMs: 10, linkRate: 1e9, at: now - 1000 },
      { bytes: 1e7, downtimeMs: 10, at: now - 900 },
      { bytes: 1e7, downtimeMs: 10, linkRate: 1.2e9, at: now - 500 },
    ];
    expect(prune(pts, now).map((p) => p.at)).toEqual([now - 1000, now - 500]);
    // A much slower link now: what was learned on the fast one goes.
    expect(prune([...pts, { bytes: 1e7, downtimeMs: 280, linkRate: 37e6, at: now }], now).map((p) => p.at)).toEqual([now]);
    expect(prune(Array.from({ length: 30 }, (_, i) => ({ bytes: 1, downtimeMs: 1, at: now - i })).reverse(), now)).toHaveLength(20);
  });

  it('a summary per pair for host facts; an unreadable file is reported and left for the next write', async () => {
    const file = tmp();
    writeFileSync(file, '{"version": 7}');
    const s = new SwitchoverStore(file);
    expect(s.summaries()).toEqual([]);
    for (let i = 0; i < 3; i++) s.set('hv1->hv2', [...(s.get('hv1->hv2') ?? []), { bytes: 20e6 + i, downtimeMs: 15, linkRate: 2e9, at: Date.now() + i }]);
    await s.flushed();
    const [sum] = s.summaries();
    expect(sum).toMatchObject({ from: 'hv1', to: 'hv2', count: 3, linkRate: 2e9 });
    expect(sum!.finalCopyRate).toBeCloseTo(2e9, -3);
    expect(sum!.overheadMs).toBeCloseTo(5, 1);
    expect(JSON.parse(readFileSync(file, 'utf8')).version).toBe(1);
    s.clear();
    await s.flushed();
    expect(new SwitchoverStore(file).summaries()).toEqual([]);
  });
});
