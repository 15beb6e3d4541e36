/**
 * libvirt's migration job statistics, normalised into the one MigrationSample that QMP
 * migrations produce, so charts, projections, policies, the recorder and replay need not
 * know which manager moved the VM. Field names are libvirt's typed parameters
 * (VIR_DOMAIN_JOB_*, libvirt-domain.h) as `virsh domjobinfo --rawstats` and the
 * job-completed event print them.
 */
import { put } from './migration';
import type { MigrationPhase, MigrationSample } from './migration';

/** virDomainJobType. */
export const LIBVIRT_JOB_TYPE = { none: 0, bounded: 1, unbounded: 2, completed: 3, failed: 4, cancelled: 5 } as const;

export type JobFields = Record<string, number | string>;

const num = (f: JobFields, k: string): number | undefined => {
  const v = f[k];
  return typeof v === 'number' && Number.isFinite(v) ? v : undefined;
};

/**
 * The QEMU-style status a libvirt job stands for, so phase logic is shared: a running job
 * is `active` (or `postcopy-active` once the switch to postcopy happened, `postcopy-paused`
 * when it is interrupted), an ended one `completed`/`failed`/`cancelled`.
 */
export function statusForJob(jobType: number, postcopy: 'no' | 'active' | 'paused'): string {
  switch (jobType) {
    case LIBVIRT_JOB_TYPE.bounded:
    case LIBVIRT_JOB_TYPE.unbounded:
      return postcopy === 'active' ? 'postcopy-active' : postcopy === 'paused' ? 'postcopy-paused' : 'active';
    case LIBVIRT_JOB_TYPE.completed:
      return 'completed';
    case LIBVIRT_JOB_TYPE.failed:
      return 'failed';
    case LIBVIRT_JOB_TYPE.cancelled:
      return 'cancelled';
    default:
      return 'none';
  }
}

/**
 * One sample from a job's statistics. `ended`: the statistics of a finished job (the
 * job-completed event, `--completed`): libvirt's `downtime` is then the real downtime,
 * while a job runs it is the expected one.
 */
export function sampleFromJobStats(fields: JobFields, status: string, t: number, elapsedMs: number, phase: MigrationPhase, ended = false): MigrationSample {
  const s: MigrationSample = { t, elapsedMs, status, phase };
  const pageSize = num(fields, 'memory_page_size');
  put(s, 'pass', num(fields, 'memory_iteration'));
  put(s, 'transferredBytes', num(fields, 'memory_processed'));
  put(s, 'remainingBytes', num(fields, 'memory_remaining'));
  put(s, 'totalBytes', num(fields, 'memory_total'));
  const dirtyPages = num(fields, 'memory_dirty_rate');
  if (dirtyPages !== undefined && pageSize !== undefined) s.dirtyRate = dirtyPages * pageSize;
  put(s, 'transferRate', num(fields, 'memory_bps'));
  put(s, 'normalPages', num(fields, 'memory_normal'));
  put(s, 'duplicatePages', num(fields, 'memory_constant'));
  put(s, 'pageSize', pageSize);
  put(s, 'postcopyRequests', num(fields, 'memory_postcopy_requests'));
  const cache = num(fields, 'compression_cache');
  if (cache !== undefined) {
    const pages = num(fields, 'compression_pages') ?? 0;
    const misses = num(fields, 'compression_cache_misses') ?? 0;
    s.xbzrle = {
      cacheSize: cache,
      bytes: num(fields, 'compression_bytes') ?? 0,
      pages,
      cacheMiss: misses,
      // libvirt reports no rate: the share of misses over the whole run so far.
      cacheMissRate: pages + misses > 0 ? misses / (pages + misses) : 0,
      overflow: num(fields, 'compression_overflow') ?? 0,
    };
  }
  put(s, 'cpuThrottlePct', num(fields, 'auto_converge_throttle'));
  const downtime = num(fields, 'downtime');
  if (ended) put(s, 'downtimeMs', downtime);
  else put(s, 'expectedDowntimeMs', downtime);
  put(s, 'setupTimeMs', num(fields, 'setup_time'));
  put(s, 'totalTimeMs', num(fields, 'time_elapsed'));
  const err = fields.errmsg;
  if (typeof err === 'string' && err) s.errorDesc = err;
  return s;
}

/** What a libvirt lifecycle event says about a migration (`virsh event` prints `Suspended Migrated`). */
export type LifecycleMeaning =
  | 'source-paused-for-switchover' // Suspended Migrated
  | 'postcopy-started' // Suspended Post-copy (source) / Resumed Post-copy (destination)
  | 'postcopy-failed' // Suspended Post-copy Error / Running Post-copy Failed
  | 'source-stopped' // Stopped Migrated
  | 'destination-started' // Started Migrated
  | 'destination-resumed' // Resumed Migrated
  | 'resumed' // Resumed Unpaused and the like
  | 'suspended' // Suspended Paused (someone suspended it)
  | 'stopped' // Stopped Destroyed/Failed/Crashed/Shutdown
  | 'other';

export function lifecycleMeaning(detail: string): LifecycleMeaning {
  const d = detail.trim();
  if (d === 'Suspended Migrated') return 'source-paused-for-switchover';
  if (d === 'Suspended Post-copy' || d === 'Resumed Post-copy') return 'postcopy-started';
  if (/Post-copy (Error|Failed)/.test(d)) return 'postcopy-failed';
  if (d === 'Stopped Migrated') return 'source-stopped';
  if (d === 'Started Migrated') return 'destination-started';
  if (d === 'Resumed Migrated') return 'destination-resumed';
  if (d.startsWith('Resumed')) return 'resumed';
  if (d.startsWith('Suspended')) return 'suspended';
  if (d.startsWith('Stopped')) return 'stopped';
  return 'other';
}
