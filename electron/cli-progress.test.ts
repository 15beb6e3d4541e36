import { describe, expect, it } from 'vitest';
import { LogProgress } from './cli';

describe('progress written to a log (not a terminal)', () => {
  it('writes a line at most once a second, and a phase\'s last line as it ends when that was held back', () => {
    const p = new LogProgress();
    const out: string[] = [];
    const sample = (line: string, t: number) => {
      const l = p.sample(line, t);
      if (l !== undefined) out.push(l);
    };
    const phase = (name: string) => {
      const l = p.phaseEnds();
      if (l !== undefined) out.push(l);
      out.push(`phase ${name}`);
    };
    // A small disk copied within half a second: before, the log kept only "0 B / 16.8 MB".
    sample('storage-copy  0 B / 16.8 MB', 1000);
    sample('storage-copy  5.2 MB / 16.8 MB', 1100);
    sample('storage-copy  16.8 MB / 16.8 MB  in sync', 1400);
    phase('setup');
    sample('setup', 1500);
    phase('precopy'); // its one line, held back (under a second after the last), written as it ends
    sample('precopy 1', 2600);
    sample('precopy 1', 2700); // unchanged: not again
    sample('precopy 2', 2800);
    sample('precopy 1', 2900); // back to what the log shows: nothing held back
    phase('completed');
    expect(out).toEqual([
      'storage-copy  0 B / 16.8 MB',
      'storage-copy  16.8 MB / 16.8 MB  in sync',
      'phase setup',
      'setup',
      'phase precopy',
      'precopy 1',
      'phase completed',
    ]);
  });
});
