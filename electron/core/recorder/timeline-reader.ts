/**
 * Reads a timeline file from disk for the CLI, the reports and the engine: a Ferry
 * `.ferry.jsonl`, a Proxmox VE task log or a guestperf report. Line formats are streamed in
 * chunks through their incremental parsers, so the file's text is never held whole (a file
 * larger than a JavaScript string can hold still opens); only the JSON report, a single
 * document, is read at once, up to MAX_REPORT_BYTES.
 */
import { closeSync, fstatSync, openSync, readSync } from 'node:fs';
import path from 'node:path';
import { StringDecoder } from 'node:string_decoder';
import { FerryException } from '../../../shared/errors';
import { MAX_TIMELINE_LINE_CHARS, TimelineParser } from '../../../shared/model/timeline';
import type { ParsedTimeline } from '../../../shared/model/timeline';
import { notATimeline, sniffTimelineKind } from '../../../shared/import/open-timeline';
import { parseGuestperfReport } from '../../../shared/import/guestperf';
import { ProxmoxTaskLogParser } from '../../../shared/import/proxmox-task-log';

const CHUNK_BYTES = 1 << 20;
/** A guestperf report is one JSON document, read whole: far larger than any real one. */
export const MAX_REPORT_BYTES = 256 * 1024 * 1024;

interface LineSink {
  line(text: string): void;
  tooLong?(chars: number): void;
}

/** Feeds every complete line of the open file to `sink`, chunk by chunk; returns the text after the last newline. */
export function streamLines(fd: number, sink: LineSink, chunkBytes = CHUNK_BYTES): string {
  const decoder = new StringDecoder('utf8');
  const buf = Buffer.alloc(chunkBytes);
  let carry = '';
  let dropping = 0; // > 0 while skipping the rest of a line that grew past the cap
  for (let position = 0; ;) {
    const n = readSync(fd, buf, 0, chunkBytes, position);
    if (n === 0) break;
    position += n;
    let text = carry + decoder.write(buf.subarray(0, n));
    carry = '';
    let start = 0;
    for (let nl = text.indexOf('\n'); nl !== -1; nl = text.indexOf('\n', start)) {
      if (dropping) {
        sink.tooLong?.(dropping + nl - start);
        dropping = 0;
      } else if (nl - start > MAX_TIMELINE_LINE_CHARS) sink.tooLong?.(nl - start);
      else sink.line(text.slice(start, nl));
      start = nl + 1;
    }
    text = text.slice(start);
    if (dropping || text.length > MAX_TIMELINE_LINE_CHARS) dropping += text.length;
    else carry = text;
  }
  const rest = carry + decoder.end();
  if (dropping) {
    sink.tooLong?.(dropping + rest.length);
    return '';
  }
  return rest;
}

function openError(file: string, e: unknown): FerryException {
  const code = (e as NodeJS.ErrnoException).code === 'ENOENT' ? 'NOT_FOUND' : 'IO_ERROR';
  return new FerryException(code, `cannot read timeline ${file}: ${(e as Error).message}`, { path: file });
}

/** The first non-blank line among the file's first 64 KiB. */
function firstLine(fd: number): string {
  const buf = Buffer.alloc(64 * 1024);
  const n = readSync(fd, buf, 0, buf.length, 0);
  const text = buf.subarray(0, n).toString('utf8').replace(/^\uFEFF/, '');
  for (const l of text.split('\n')) if (l.trim()) return l.trim();
  return '';
}

export function readTimeline(file: string): ParsedTimeline {
  let fd: number;
  try {
    fd = openSync(file, 'r');
  } catch (e) {
    throw openError(file, e);
  }
  const name = path.basename(file);
  try {
    const kind = sniffTimelineKind(firstLine(fd));
    if (kind === 'unknown') throw notATimeline(file);
    if (kind === 'json-report') {
      const size = fstatSync(fd).size;
      if (size > MAX_REPORT_BYTES) throw new FerryException('INVALID_REQUEST', `${file} is ${(size / 1e6).toFixed(0)} MB: larger than any guestperf report Ferry reads (${MAX_REPORT_BYTES / 1e6} MB)`);
      const buf = Buffer.alloc(size);
      const n = readSync(fd, buf, 0, size, 0);
      return parseGuestperfReport(buf.subarray(0, n).toString('utf8').replace(/^\uFEFF/, ''), name);
    }
    if (kind === 'proxmox-task-log') {
      const p = new ProxmoxTaskLogParser(name);
      return p.finish(streamLines(fd, p));
    }
    const p = new TimelineParser();
    const parsed = p.finish(streamLines(fd, p));
    if (!parsed.header) throw notATimeline(file);
    return parsed;
  } catch (e) {
    if (e instanceof FerryException) throw e;
    throw openError(file, e);
  } finally {
    closeSync(fd);
  }
}

export { CSV_COLUMNS, timelineToCsv, timelineToJson } from '../../../shared/report/export';
export { timelineToOpenMetrics } from '../../../shared/report/metrics';
