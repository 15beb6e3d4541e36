import { describe, expect, it } from 'vitest';
import { measureClock, offsetBetween } from './clock-offset';
import { LocalTransport } from '../transport/local-transport';
import type { HostTransport } from '../transport/host-transport';

describe('measureClock', () => {
  it('reads this machine as itself: offset within its own uncertainty, well under 50 ms', async () => {
    const r = await measureClock(new LocalTransport(), { samples: 6 });
    expect(r.samples).toBe(6);
    expect(r.rttMs).toBeGreaterThan(0);
    expect(Math.abs(r.offsetMs)).toBeLessThanOrEqual(r.uncertaintyMs + 1);
    expect(Math.abs(r.offsetMs)).toBeLessThan(50);
  });

  it('sees a clock that runs ahead, and adds the uncertainties of two readings', async () => {
    // This machine's clock read 1.5 s behind: the host appears 1.5 s ahead.
    const r = await measureClock(new LocalTransport(), { samples: 4, now: () => Date.now() - 1500 });
    expect(r.offsetMs).toBeGreaterThan(1400);
    expect(r.offsetMs).toBeLessThan(1600);
    expect(offsetBetween({ offsetMs: 10, uncertaintyMs: 1, rttMs: 2, samples: 1 }, { offsetMs: 25, uncertaintyMs: 2, rttMs: 4, samples: 1 })).toEqual({ offsetMs: 15, uncertaintyMs: 3 });
  });

  it('a host that stops answering after a few readings gives the best of those, with how many; one that never answers is an error', async () => {
    const local = new LocalTransport();
    const stalling = (answers: number): HostTransport => ({
      ...local,
      label: 'stalling',
      spawn: () => local.spawn(['sh', '-c', `i=0; while [ $i -lt ${answers} ]; do read -r _; date +%s.%N; i=$((i+1)); done; exec sleep 30`]),
    } as unknown as HostTransport);
    const r = await measureClock(stalling(3), { samples: 8, timeoutMs: 1500 });
    expect(r.samples).toBe(2); // the first answer pays for the shell starting and is not used
    expect(Math.abs(r.offsetMs)).toBeLessThanOrEqual(r.uncertaintyMs + 1);
    await expect(measureClock(stalling(1), { samples: 8, timeoutMs: 800 })).rejects.toThrow(/stalling: no clock reading within 800 ms/);
  });

  it('a probe shell that never answers is replaced once by a fresh one, within the same time', async () => {
    const local = new LocalTransport();
    let shells = 0;
    const firstDead: HostTransport = {
      ...local,
      label: 'first-dead',
      spawn: () => (shells++ === 0 ? local.spawn(['sleep', '30']) : local.spawn(['sh', '-c', 'while read -r _; do date +%s.%N; done'])),
    } as unknown as HostTransport;
    const t0 = Date.now();
    const r = await measureClock(firstDead, { samples: 4, timeoutMs: 2000 });
    expect(shells).toBe(2);
    expect(r.samples).toBe(4);
    expect(Date.now() - t0).toBeLessThan(2000);
    expect(Math.abs(r.offsetMs)).toBeLessThanOrEqual(r.uncertaintyMs + 1);
  });
});
