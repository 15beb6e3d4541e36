import { Duplex } from 'node:stream';

/** Two connected in-memory Duplex ends: what one writes, the other reads. */
export function duplexPair(): [Duplex, Duplex] {
  const ends: Duplex[] = [];
  const make = (peer: () => Duplex) =>
    new Duplex({
      read() {},
      write(chunk: Buffer, _enc, cb) {
        peer().push(chunk);
        cb();
      },
      final(cb) {
        peer().push(null);
        cb();
      },
      destroy(err, cb) {
        const p = peer();
        if (!p.destroyed) p.push(null);
        cb(err);
      },
    });
  const a = make(() => ends[1]!);
  const b = make(() => ends[0]!);
  ends.push(a, b);
  return [a, b];
}

/** Collects the JSON lines written to `end` and lets a test answer them. */
export function lineReader(end: Duplex, onLine: (msg: Record<string, unknown>) => void): void {
  let buf = '';
  end.on('data', (c: Buffer) => {
    buf += c.toString('utf8');
    let i;
    while ((i = buf.indexOf('\n')) >= 0) {
      const line = buf.slice(0, i);
      buf = buf.slice(i + 1);
      if (line.trim()) onLine(JSON.parse(line) as Record<string, unknown>);
    }
  });
}
