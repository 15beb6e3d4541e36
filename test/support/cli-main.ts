/** Runs the `ferry` CLI's main() in this process, its stdout and stderr caught as strings. */
import { Writable } from 'node:stream';
import { main } from '../../electron/cli';

class Capture extends Writable {
  text = '';
  override _write(chunk: Buffer, _enc: string, cb: () => void): void {
    this.text += chunk.toString();
    cb();
  }
}

export async function ferry(...argv: string[]): Promise<{ code: number; out: string; err: string }> {
  const out = new Capture();
  const err = new Capture();
  const code = await main(argv, out, err);
  return { code, out: out.text, err: err.text };
}
