import { describe, expect, it } from 'vitest';
import { lifecycleMeaning, sampleFromJobStats, statusForJob } from './libvirt';
import { LibvirtDomainNameSchema } from './vm';
import { MigrationPlanSchema } from './migration';

describe('libvirt job statistics as samples', () => {
  const running = {
    operation: 5, time_elapsed: 1662, downtime: 300, setup_time: 5, memory_total: 537067520, memory_processed: 69245747, memory_remaining: 66277376,
    memory_bps: 62955540, memory_constant: 114705, memory_normal: 16621, memory_dirty_rate: 15430, memory_iteration: 2, memory_postcopy_requests: 0, memory_page_size: 4096,
    auto_converge_throttle: 20, compression_cache: 67108864, compression_bytes: 1000, compression_pages: 30, compression_cache_misses: 10, compression_overflow: 1,
  };

  it('maps every field the charts use, dirty rate in pages/s times the page size, downtime as expected while running', () => {
    const s = sampleFromJobStats(running, statusForJob(2, 'no'), 1000, 1662, 'precopy');
    expect(s).toMatchObject({
      status: 'active', pass: 2, transferredBytes: 69245747, remainingBytes: 66277376, totalBytes: 537067520, dirtyRate: 15430 * 4096,
      transferRate: 62955540, duplicatePages: 114705, normalPages: 16621, pageSize: 4096, postcopyRequests: 0, cpuThrottlePct: 20,
      expectedDowntimeMs: 300, setupTimeMs: 5, totalTimeMs: 1662,
    });
    expect(s.downtimeMs).toBeUndefined();
    expect(s.xbzrle).toEqual({ cacheSize: 67108864, bytes: 1000, pages: 30, cacheMiss: 10, cacheMissRate: 0.25, overflow: 1 });
  });

  it('reads the downtime of an ended job as the real one and leaves absent fields absent', () => {
    const s = sampleFromJobStats({ downtime: 21, memory_iteration: 3 }, 'completed', 1, 2, 'activation', true);
    expect(s.downtimeMs).toBe(21);
    expect(s.expectedDowntimeMs).toBeUndefined();
    expect('dirtyRate' in s).toBe(false);
    expect('xbzrle' in s).toBe(false);
  });

  it('names job types and lifecycle events the way the engine thinks of them', () => {
    expect([0, 2, 3, 4, 5].map((j) => statusForJob(j, 'no'))).toEqual(['none', 'active', 'completed', 'failed', 'cancelled']);
    expect(statusForJob(2, 'active')).toBe('postcopy-active');
    expect(statusForJob(2, 'paused')).toBe('postcopy-paused');
    expect(['Suspended Migrated', 'Suspended Post-copy', 'Resumed Post-copy', 'Stopped Migrated', 'Started Migrated', 'Resumed Migrated', 'Suspended Post-copy Error', 'Suspended Paused', 'Defined Added'].map(lifecycleMeaning))
      .toEqual(['source-paused-for-switchover', 'postcopy-started', 'postcopy-started', 'source-stopped', 'destination-started', 'destination-resumed', 'postcopy-failed', 'suspended', 'other']);
  });
});

describe('libvirt domain names', () => {
  it('accepts what libvirt accepts and refuses what it refuses, with the reason', () => {
    for (const ok of [`my vm 'quoted' "dq" ünï 日本`, 'tab\there', '-dash', '7', 'x;y # z \\ w']) expect(LibvirtDomainNameSchema.safeParse(ok).success).toBe(true);
    expect(LibvirtDomainNameSchema.safeParse('a/b').error?.issues[0]?.message).toMatch(/"\/"/);
    expect(LibvirtDomainNameSchema.safeParse('a\nb').success).toBe(false);
    expect(LibvirtDomainNameSchema.safeParse('').success).toBe(false);
    expect(MigrationPlanSchema.safeParse({ vm: 'web server ☃', from: 'a', to: 'b' }).success).toBe(true);
  });
});
