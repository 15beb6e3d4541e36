import { readFileSync } from 'node:fs';
import { FerryException } from '../../../shared/errors';
import { parseTimeline, TIMELINE_FORMAT } from '../../../shared/model/timeline';
import type { ParsedTimeline } from '../../../shared/model/timeline';

export function readTimeline(file: string): ParsedTimeline {
  let text: string;
  try {
    text = readFileSync(file, 'utf8');
  } catch (e) {
    const code = (e as NodeJS.ErrnoException).code === 'ENOENT' ? 'NOT_FOUND' : 'IO_ERROR';
    throw new FerryException(code, `cannot read timeline ${file}: ${(e as Error).message}`, { path: file });
  }
  const parsed = parseTimeline(text);
  if (!parsed.header || parsed.header.format !== TIMELINE_FORMAT) {
    throw new FerryException('INVALID_REQUEST', `${file} is not a Ferry timeline (no ${TIMELINE_FORMAT} header line)`, { path: file });
  }
  return parsed;
}

export { CSV_COLUMNS, timelineToCsv, timelineToJson } from '../../../shared/report/export';
