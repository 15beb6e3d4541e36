/**
 * What support staff ask for: the log around a migration, and a "Copy diagnostics" text of
 * this Ferry's state (hosts and their connections, migrations, pending cleanups, the last
 * log lines). Secrets never appear: the log is redacted as it is written, and only labels,
 * states and counters of the hosts are included (no key paths' contents, no passphrases).
 */
import { existsSync, readFileSync } from 'node:fs';
import { logFile, recentLogLines } from './log';

/** Lines of the log files (rotated ones first) whose time falls in [fromMs, toMs]. */
export function logLinesBetween(fromMs: number, toMs: number, file = logFile(), max = 5000): string[] {
  if (!file) return [];
  const files = [3, 2, 1].map((i) => `${file}.${i}`).filter((f) => existsSync(f));
  if (existsSync(file)) files.push(file);
  const out: string[] = [];
  for (const f of files) {
    for (const line of readFileSync(f, 'utf8').split('\n')) {
      const t = Date.parse(line.slice(0, 24));
      if (Number.isFinite(t) && t >= fromMs && t <= toMs) out.push(line);
    }
  }
  return out.slice(-max);
}

export interface DiagnosticsInput {
  version: string;
  configDir: string;
  hosts: { id: string; label: string; state: string; lastError?: string; sessions?: Record<string, number>; facts?: Record<string, unknown> }[];
  migrations: { id: string; vm: unknown; from: unknown; to: unknown; phase: string; startedAt: number; timeline: string }[];
  pendingCleanups: { hostId: string; vm: string; reason: string; since: number }[];
}

/** Plain text, for pasting into a ticket. */
export function diagnosticsText(d: DiagnosticsInput, lines = recentLogLines(400)): string {
  const out: string[] = [];
  out.push(`Ferry ${d.version} diagnostics, ${new Date().toISOString()}`);
  out.push(`node ${process.version} on ${process.platform}/${process.arch}; config ${d.configDir}; log ${logFile() ?? '(memory only)'}`);
  out.push('', 'Hosts:');
  for (const h of d.hosts) {
    const s = h.sessions ? ` sessions ${h.sessions.held}/${h.sessions.limit} (peak ${h.sessions.peak}, ${h.sessions.refusals} refused, ${h.sessions.queued} queued)` : '';
    out.push(`  ${h.id}\t${h.state}\t${h.label}${s}${h.facts ? `\t${JSON.stringify(h.facts)}` : ''}${h.lastError ? `\tlast error: ${h.lastError}` : ''}`);
  }
  out.push('', 'Migrations:');
  if (d.migrations.length === 0) out.push('  none');
  for (const m of d.migrations) out.push(`  ${m.id}\t${String(m.vm)} ${String(m.from)} -> ${String(m.to)}\t${m.phase}\tsince ${new Date(m.startedAt).toISOString()}\t${m.timeline}`);
  out.push('', 'Destination QEMUs still to stop:');
  if (d.pendingCleanups.length === 0) out.push('  none');
  for (const c of d.pendingCleanups) out.push(`  ${c.hostId}/${c.vm}\tsince ${new Date(c.since).toISOString()}\t${c.reason}`);
  out.push('', `Last ${lines.length} log lines:`, ...lines);
  return `${out.join('\n')}\n`;
}

