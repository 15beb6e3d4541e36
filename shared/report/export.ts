/** Timeline exports that need no Node: CSV (one row per sample) and JSON (every record). */
import type { MigrationSample } from '../model/migration';
import type { ParsedTimeline } from '../model/timeline';

/** CSV columns, in order: one row per sample. */
export const CSV_COLUMNS: (keyof MigrationSample | 'guestStallMs' | 'guestAchievedBytesPerS' | 'ferryDowntimeMs' | 'verdict' | 'diskCopiedBytes' | 'diskTotalBytes' | 'diskRate')[] = [
  't', 'elapsedMs', 'status', 'phase', 'pass', 'transferredBytes', 'remainingBytes', 'totalBytes',
  'dirtyRate', 'transferRate', 'normalPages', 'duplicatePages', 'postcopyRequests', 'cpuThrottlePct',
  'expectedDowntimeMs', 'downtimeMs', 'totalTimeMs', 'guestStallMs', 'guestAchievedBytesPerS', 'ferryDowntimeMs', 'verdict',
  'diskCopiedBytes', 'diskTotalBytes', 'diskRate',
];

function csvCell(v: unknown): string {
  if (v === undefined || v === null) return '';
  const s = String(v);
  return /[",\n]/.test(s) ? `"${s.replace(/"/g, '""')}"` : s;
}

export function timelineToCsv(t: Pick<ParsedTimeline, 'samples'>): string {
  const rows = [CSV_COLUMNS.join(',')];
  for (const s of t.samples) {
    rows.push(CSV_COLUMNS.map((c) => {
      if (c === 'guestStallMs') return csvCell(s.guest?.stallMs);
      if (c === 'guestAchievedBytesPerS') return csvCell(s.guest?.achievedBytesPerS);
      if (c === 'ferryDowntimeMs') return csvCell(s.projection?.switchoverDowntimeMs ?? s.projection?.downtimeMs);
      if (c === 'verdict') return csvCell(s.projection?.verdict);
      if (c === 'diskCopiedBytes') return csvCell(s.storage?.copiedBytes);
      if (c === 'diskTotalBytes') return csvCell(s.storage?.totalBytes);
      if (c === 'diskRate') return csvCell(s.storage?.rate);
      return csvCell(s[c]);
    }).join(','));
  }
  return `${rows.join('\n')}\n`;
}

export function timelineToJson(t: ParsedTimeline): string {
  return `${JSON.stringify({ header: t.header, truncated: t.truncated, records: t.records.slice(1) }, null, 2)}\n`;
}
