/**
 * Opens whatever the user hands Ferry as a timeline: a Ferry `.ferry.jsonl`, a Proxmox VE
 * migration task log, or a QEMU guestperf JSON report. The kind is told from the first line;
 * every reader yields the same ParsedTimeline, so the viewer, `ferry report` and `ferry
 * compare` treat them alike.
 */
import { FerryException } from '../errors';
import { TIMELINE_FORMAT, parseTimeline } from '../model/timeline';
import type { ParsedTimeline } from '../model/timeline';
import { looksLikeGuestperf, parseGuestperfReport } from './guestperf';
import { PROXMOX_LINE, parseProxmoxTaskLog } from './proxmox-task-log';

export type TimelineKind = 'ferry' | 'proxmox-task-log' | 'json-report' | 'unknown';

/** The first line that is not blank (a byte-order mark dropped). */
export function firstLineOf(text: string): string {
  for (const line of text.replace(/^\uFEFF/, '').split('\n', 50)) if (line.trim()) return line.trim();
  return '';
}

export function sniffTimelineKind(firstLine: string): TimelineKind {
  const l = firstLine.replace(/^\uFEFF/, '').trim();
  if (l.startsWith('{')) {
    try {
      // One line that is a whole JSON object: a Ferry record, or a report written without indent.
      return looksLikeGuestperf(JSON.parse(l)) ? 'json-report' : 'ferry';
    } catch {
      // The start of a pretty-printed JSON document (guestperf writes indent=4), or a cut line.
      return l === '{' ? 'json-report' : 'ferry';
    }
  }
  if (PROXMOX_LINE.test(l) || /^TASK (OK|ERROR)/.test(l)) return 'proxmox-task-log';
  return 'unknown';
}

export function notATimeline(name: string): FerryException {
  return new FerryException('INVALID_REQUEST', `${name} is not a Ferry timeline (its first line is not a ${TIMELINE_FORMAT} header), a Proxmox VE migration task log or a QEMU guestperf report`);
}

/** Any supported file's text as a timeline; throws a one-line FerryException when it is none. */
export function parseAnyTimeline(text: string, name = 'this file'): ParsedTimeline {
  const kind = sniffTimelineKind(firstLineOf(text));
  if (kind === 'proxmox-task-log') return parseProxmoxTaskLog(text, name);
  if (kind === 'json-report') return parseGuestperfReport(text, name);
  if (kind === 'unknown') throw notATimeline(name);
  const parsed = parseTimeline(text);
  if (!parsed.header) throw notATimeline(name);
  return parsed;
}
