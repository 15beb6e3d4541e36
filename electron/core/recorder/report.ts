/** `ferry report` and `ferry compare`: timelines on disk to self-contained HTML files. */
import path from 'node:path';
import { FerryException } from '../../../shared/errors';
import { compareHtml, reportHtml } from '../../../shared/report/report-html';
import { writeFileAtomic } from '../transport/local-transport';
import { readTimeline } from './timeline-reader';
import { logLinesBetween } from '../diagnostics';
import type { ParsedTimeline } from '../../../shared/model/timeline';

/** A timeline's name without its extension: `run-1.ferry.jsonl` → `run-1`, `task.log` → `task`. */
export function timelineBaseName(file: string): string {
  return path.basename(file).replace(/(\.ferry)?\.jsonl$|\.(log|txt|json)$/, '');
}

/** `run-1.ferry.jsonl` → `run-1.report.html` beside it. */
export function defaultReportPath(file: string): string {
  return path.join(path.dirname(file), `${timelineBaseName(file)}.report.html`);
}

export interface WrittenReport {
  output: string;
  truncated: string[];
  /** What the reader had to say about an input (unreadable lines, a newer format), each naming its file. */
  notices: string[];
  bytes: number;
}

const noticesOf = (file: string, t: ParsedTimeline) => t.notices.map((n) => `${file}: ${n}`);

/** `withLog`: Ferry's log lines from the migration's start to its end (a minute either side). */
export async function writeReport(file: string, output = defaultReportPath(file), options: { withLog?: boolean } = {}): Promise<WrittenReport> {
  const t = readTimeline(file);
  let log: string[] | undefined;
  if (options.withLog) {
    let from = t.header?.createdAt ?? Infinity;
    let to = -Infinity;
    for (const r of t.records) {
      const x = (r as { t?: unknown }).t;
      if (typeof x === 'number') {
        from = Math.min(from, x);
        to = Math.max(to, x);
      }
    }
    to = Math.max(to, from);
    log = Number.isFinite(from) ? logLinesBetween(from - 60_000, to + 60_000) : [];
  }
  const html = reportHtml(t, path.basename(file), log ? { log } : {});
  await writeFileAtomic(output, html);
  return { output, truncated: t.truncated ? [file] : [], notices: noticesOf(file, t), bytes: Buffer.byteLength(html) };
}

export async function writeCompare(files: string[], output: string, names?: string[]): Promise<WrittenReport> {
  if (files.length < 2) throw new FerryException('INVALID_REQUEST', `compare needs at least two timelines, got ${files.length}`);
  const items = files.map((f, i) => ({ name: names?.[i] ?? timelineBaseName(f), timeline: readTimeline(f) }));
  const html = compareHtml(items);
  await writeFileAtomic(output, html);
  return { output, truncated: files.filter((_, i) => items[i]!.timeline.truncated), notices: files.flatMap((f, i) => noticesOf(f, items[i]!.timeline)), bytes: Buffer.byteLength(html) };
}
