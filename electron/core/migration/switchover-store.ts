/**
 * What finished switchovers taught Ferry about each pair of hosts, kept in
 * `<configDir>/switchovers.json` so that the console and every `ferry` command share it and
 * a second migration between two hosts starts where the first left off. Each entry is one
 * switchover: bytes copied while the VM was stopped, the downtime QEMU reported, and the
 * migration connection's measured speed (link-probe.ts) at the time.
 *
 * Entries age out: after {@link MAX_AGE_MS}, and as soon as a switchover measures a link more
 * than LINK_CHANGE_FACTOR away from the one earlier entries were measured on (the link changed:
 * what was learned on the old one no longer applies). Writes are atomic (temporary file +
 * rename); each write first merges what another Ferry process wrote meanwhile.
 */
import { readFileSync, statSync } from 'node:fs';
import { z } from 'zod';
import { sameLink, switchoverModel } from '../../../shared/analysis/projection';
import type { SwitchoverPoint } from '../../../shared/analysis/projection';
import { writeFileAtomic } from '../transport/local-transport';
import { rootLog } from '../log';

const log = rootLog.child('switchovers');

/** What the engine needs: the switchovers of one host pair (`from->to`), and a new list for it. A plain Map does (in memory). */
export interface SwitchoverMemory {
  get(pair: string): readonly SwitchoverPoint[] | undefined;
  set(pair: string, points: SwitchoverPoint[]): unknown;
}

export const MAX_AGE_MS = 30 * 24 * 3600_000;
export const MAX_POINTS = 20;
/** How often a read looks at the file again for another process's writes. */
const RECHECK_MS = 1000;

const PointSchema = z.object({
  bytes: z.number().nonnegative(),
  downtimeMs: z.number().positive(),
  linkRate: z.number().positive().optional(),
  at: z.number().optional(),
});
const FileSchema = z.object({ version: z.literal(1), pairs: z.record(z.string(), z.array(PointSchema)) });

export function pairKey(from: string, to: string): string {
  return `${from}->${to}`;
}

/**
 * The entries worth keeping, oldest first: none older than `maxAgeMs`; when the newest carries a
 * link measurement, only entries measured on the same link; at most `maxPoints`.
 */
export function prune(points: readonly SwitchoverPoint[], now: number, maxAgeMs = MAX_AGE_MS, maxPoints = MAX_POINTS): SwitchoverPoint[] {
  const fresh = points.filter((p) => p.at === undefined || now - p.at <= maxAgeMs);
  const newest = fresh.at(-1)?.linkRate;
  const here = newest === undefined ? fresh : fresh.filter((p) => p.linkRate !== undefined && sameLink(p.linkRate, newest));
  return here.slice(-maxPoints);
}

const keyOf = (p: SwitchoverPoint) => `${p.at ?? ''}/${p.bytes}/${p.downtimeMs}`;

export interface PairSummary {
  from: string;
  to: string;
  /** Switchovers the model rests on (on the current link). */
  count: number;
  finalCopyRate?: number;
  overheadMs?: number;
  /** The migration connection's speed last measured between them. */
  linkRate?: number;
  lastAt?: number;
}

export class SwitchoverStore implements SwitchoverMemory {
  private pairs = new Map<string, SwitchoverPoint[]>();
  private mtimeMs: number | undefined;
  private checkedAt = 0;
  private writing: Promise<void> = Promise.resolve();

  /** `file` undefined: kept in memory only. */
  constructor(private readonly file: string | undefined, private readonly now: () => number = Date.now) {
    this.reload(true);
  }

  get(pair: string): readonly SwitchoverPoint[] | undefined {
    this.reload(false);
    const list = this.pairs.get(pair);
    return list ? prune(list, this.now()) : undefined;
  }

  /** The pair's switchovers are now `points` (the engine appends its latest): pruned, merged with the file, written. */
  set(pair: string, points: SwitchoverPoint[]): this {
    this.reload(true);
    const merged = new Map<string, SwitchoverPoint>();
    for (const p of [...(this.pairs.get(pair) ?? []), ...points]) merged.set(keyOf(p), p);
    const sorted = [...merged.values()].sort((a, b) => (a.at ?? 0) - (b.at ?? 0));
    const kept = prune(sorted, this.now());
    if (kept.length < sorted.length) log.info(`${pair}: ${sorted.length - kept.length} earlier switchover(s) aged out (older than ${Math.round(MAX_AGE_MS / 86_400_000)} days, or measured on another link)`);
    this.pairs.set(pair, kept);
    this.save();
    return this;
  }

  /** Forgets every pair (a fresh start, as on a new machine), here and in the file. */
  clear(): void {
    this.pairs.clear();
    this.save();
  }

  /** Resolves once every write asked for so far is on disk. */
  flushed(): Promise<void> {
    return this.writing;
  }

  /** Per pair: what the projection will use when it has no live measurement yet. */
  summaries(): PairSummary[] {
    this.reload(false);
    const out: PairSummary[] = [];
    for (const [pair, all] of this.pairs) {
      const points = prune(all, this.now());
      const [from, to] = pair.split('->');
      if (!from || !to || points.length === 0) continue;
      const m = switchoverModel(points);
      const lastLink = [...points].reverse().find((p) => p.linkRate !== undefined)?.linkRate;
      const last = points.at(-1)?.at;
      out.push({
        from, to, count: m.learnedFrom || points.length,
        ...(m.finalCopyRate !== undefined ? { finalCopyRate: m.finalCopyRate } : {}),
        ...(m.overheadMs !== undefined ? { overheadMs: m.overheadMs } : {}),
        ...(lastLink !== undefined ? { linkRate: lastLink } : {}),
        ...(last !== undefined ? { lastAt: last } : {}),
      });
    }
    return out;
  }

  private reload(force: boolean): void {
    if (!this.file) return;
    const now = Date.now();
    if (!force && now - this.checkedAt < RECHECK_MS) return;
    this.checkedAt = now;
    let mtime: number | undefined;
    try {
      mtime = statSync(this.file, { throwIfNoEntry: false })?.mtimeMs;
    } catch (e) {
      log.warn(`cannot look at ${this.file}: ${e instanceof Error ? e.message : String(e)}`);
      return;
    }
    if (mtime === undefined || mtime === this.mtimeMs) return;
    this.mtimeMs = mtime;
    try {
      const parsed = FileSchema.safeParse(JSON.parse(readFileSync(this.file, 'utf8')));
      if (!parsed.success) {
        log.warn(`${this.file} is not a switchover file Ferry can read (${parsed.error.issues[0]?.message ?? 'bad format'}): starting from what this process learns`);
        return;
      }
      // Merged, not replaced: another process's switchovers join this one's (nothing is lost but what ages out).
      for (const [pair, points] of Object.entries(parsed.data.pairs)) {
        const merged = new Map<string, SwitchoverPoint>();
        for (const p of [...(this.pairs.get(pair) ?? []), ...(points as SwitchoverPoint[])]) merged.set(keyOf(p), p);
        this.pairs.set(pair, [...merged.values()].sort((a, b) => (a.at ?? 0) - (b.at ?? 0)));
      }
    } catch (e) {
      log.warn(`cannot read ${this.file}: ${e instanceof Error ? e.message : String(e)}`);
    }
  }

  private save(): void {
    const file = this.file;
    if (!file) return;
    const body = `${JSON.stringify({ version: 1, pairs: Object.fromEntries(this.pairs) }, null, 1)}\n`;
    this.writing = this.writing.then(async () => {
      await writeFileAtomic(file, body, 0o600);
      this.mtimeMs = statSync(file, { throwIfNoEntry: false })?.mtimeMs;
    }).catch(log.dropped(`writing ${file}`, 'error'));
  }
}
