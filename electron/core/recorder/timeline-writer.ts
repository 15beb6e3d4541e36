/**
 * Appends timeline records to a `.ferry.jsonl` file as they happen. Lines are buffered and
 * written (appended with one write) at least every `flushMs` (default 250 ms): a crash
 * loses at most that much, and what is on disk is always whole lines but perhaps the last.
 */
import { closeSync, mkdirSync, openSync, writeSync, fsyncSync } from 'node:fs';
import path from 'node:path';
import { FerryException } from '../../../shared/errors';
import type { TimelineHeader, TimelineRecord } from '../../../shared/model/timeline';

export class TimelineWriter {
  private fd: number | undefined;
  private pending: string[] = [];
  private timer: NodeJS.Timeout | undefined;

  /**
   * With a header: creates (or replaces) the file and writes the header at once. Without:
   * appends to an existing recording (resuming after a restart).
   */
  constructor(readonly file: string, header: TimelineHeader | undefined, private readonly flushMs = 250) {
    try {
      mkdirSync(path.dirname(file), { recursive: true });
      this.fd = openSync(file, header ? 'w' : 'a', 0o644);
    } catch (e) {
      throw new FerryException('IO_ERROR', `cannot write timeline ${file}: ${(e as Error).message}`, { path: file });
    }
    if (header) {
      this.append(header);
      this.flush();
    }
  }

  append(record: TimelineRecord): void {
    if (this.fd === undefined) return;
    this.pending.push(`${JSON.stringify(record)}\n`);
    if (!this.timer) {
      this.timer = setTimeout(() => this.flush(), this.flushMs);
      this.timer.unref?.();
    }
  }

  flush(): void {
    if (this.timer) clearTimeout(this.timer);
    this.timer = undefined;
    if (this.fd === undefined || this.pending.length === 0) return;
    const data = this.pending.join('');
    this.pending = [];
    writeSync(this.fd, data);
  }

  /** Flushes, fsyncs and closes; further appends are ignored. */
  close(): void {
    if (this.fd === undefined) return;
    this.flush();
    try {
      fsyncSync(this.fd);
    } catch {
      // fsync is refused on some filesystems (tmpfs, pipes); the data is written either way
    }
    closeSync(this.fd);
    this.fd = undefined;
  }
}
