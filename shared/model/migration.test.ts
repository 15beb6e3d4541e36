import { describe, expect, it } from 'vitest';
import { MigrationPlanSchema, migrationRunning, phaseForStatus, sampleFromQueryMigrate } from './migration';

// A query-migrate reply as QEMU 7.2 sends it mid-precopy.
const active = {
  'expected-downtime': 325, status: 'active', 'setup-time': 3, 'total-time': 1234,
  ram: {
    total: 537_001_984, 'postcopy-requests': 0, 'dirty-sync-count': 4, 'multifd-bytes': 0, 'pages-per-second': 24_000,
    'downtime-bytes': 0, 'page-size': 4096, remaining: 29_474_816, 'postcopy-bytes': 0, mbps: 800.5, transferred: 310_000_000,
    'dirty-sync-missed-zero-copy': 0, 'precopy-bytes': 310_000_000, duplicate: 60_000, 'dirty-pages-rate': 20_480, skipped: 0,
    'normal-bytes': 300_000_000, normal: 73_242,
  },
};

describe('sampleFromQueryMigrate', () => {
  it('normalises units: bytes, bytes/s, passes', () => {
    const s = sampleFromQueryMigrate(active, 5000, 1300, 'precopy');
    expect(s).toMatchObject({
      t: 5000, elapsedMs: 1300, status: 'active', phase: 'precopy', pass: 4, remainingBytes: 29_474_816, totalBytes: 537_001_984,
      transferredBytes: 310_000_000, dirtyRate: 20_480 * 4096, transferRate: 100_062_500, expectedDowntimeMs: 325, setupTimeMs: 3,
      normalPages: 73_242, duplicatePages: 60_000, postcopyRequests: 0,
    });
  });

  it('leaves out what QEMU did not report, never invents it', () => {
    const s = sampleFromQueryMigrate({ status: 'setup' }, 1, 0, 'setup');
    expect(s).toEqual({ t: 1, elapsedMs: 0, status: 'setup', phase: 'setup' });
    const noRate = sampleFromQueryMigrate({ status: 'active', ram: { ...active.ram, 'dirty-pages-rate': undefined } }, 1, 0, 'precopy');
    expect(noRate).not.toHaveProperty('dirtyRate');
    expect(noRate).not.toHaveProperty('xbzrle');
    expect(noRate).not.toHaveProperty('cpuThrottlePct');
  });

  it('carries xbzrle, throttle and the error description', () => {
    const s = sampleFromQueryMigrate({ status: 'failed', 'error-desc': 'Unable to write to socket', 'cpu-throttle-percentage': 40,
      'xbzrle-cache': { 'cache-size': 134_217_728, bytes: 10, pages: 2, 'cache-miss': 3, 'cache-miss-rate': 0.5, 'encoding-rate': 2.5, overflow: 0 } }, 1, 0, 'failed');
    expect(s).toMatchObject({ errorDesc: 'Unable to write to socket', cpuThrottlePct: 40, xbzrle: { cacheSize: 134_217_728, encodingRate: 2.5 } });
  });
});

describe('phaseForStatus', () => {
  it('tells precopy from stop-and-copy by the source STOP event', () => {
    expect(phaseForStatus('active', false, 'setup')).toBe('precopy');
    expect(phaseForStatus('active', true, 'precopy')).toBe('stop-and-copy');
    expect(phaseForStatus('device', true, 'precopy')).toBe('stop-and-copy');
    expect(phaseForStatus('postcopy-active', true, 'precopy')).toBe('postcopy');
    expect(phaseForStatus('postcopy-paused', true, 'postcopy')).toBe('postcopy-paused');
    expect(phaseForStatus('completed', true, 'stop-and-copy')).toBe('commitment');
    expect(phaseForStatus('completed', true, 'activation')).toBe('activation');
    expect(phaseForStatus('cancelling', false, 'precopy')).toBe('precopy');
    expect(phaseForStatus('cancelled', false, 'precopy')).toBe('cancelled');
    expect(phaseForStatus('wait-unplug', false, 'setup')).toBe('setup');
    // a stale 'setup' reply after the move to active does not take the phase back
    expect(phaseForStatus('setup', false, 'precopy')).toBe('precopy');
    expect(phaseForStatus('setup', false, 'reservation')).toBe('setup');
    expect(phaseForStatus('active', true, 'postcopy')).toBe('postcopy');
    expect(phaseForStatus('postcopy-active', true, 'postcopy-paused')).toBe('postcopy');
    expect(phaseForStatus('postcopy-paused', true, 'postcopy')).toBe('postcopy-paused');
  });
});

describe('MigrationPlanSchema', () => {
  it('names what is wrong with a plan', () => {
    const bad = MigrationPlanSchema.safeParse({ vm: 'demo', from: 'lab-a', to: 'lab-a', maxBandwidth: -5 });
    expect(bad.success).toBe(false);
    const msgs = bad.error!.issues.map((i) => `${i.path.join('.')}: ${i.message}`);
    expect(msgs).toContain('maxBandwidth: bandwidth must be positive');
    expect(MigrationPlanSchema.safeParse({ vm: 'demo', from: 'a', to: 'b', mode: 'postcopy-after' }).error?.issues[0]?.message).toBe('postcopy-after needs postcopyAfterPasses');
    expect(MigrationPlanSchema.parse({ vm: 'demo', from: 'a', to: 'b' }).mode).toBe('precopy');
  });
});

describe('query-migrate of newer QEMUs', () => {
  it('keeps fields it does not interpret in extra, reads dirty-limit figures, never drops a status', () => {
    const s = sampleFromQueryMigrate({
      status: 'postcopy-device', 'total-time': 10, 'dirty-limit-throttle-time-per-round': 2500, 'dirty-limit-ring-full-time': 100,
      'socket-address': [{ type: 'inet', port: '1' }], 'future-field': { a: 1 },
      ram: { transferred: 5, 'page-size': 4096, 'dirty-sync-missed-zero-copy': 0, 'pages-per-second': 7 },
    }, 1, 1, 'postcopy');
    expect(s).toMatchObject({ status: 'postcopy-device', transferredBytes: 5, dirtyLimitThrottleUs: 2500, dirtyLimitRingFullUs: 100, totalTimeMs: 10 });
    expect(s.extra).toEqual({ 'socket-address': [{ type: 'inet', port: '1' }], 'future-field': { a: 1 }, 'ram.dirty-sync-missed-zero-copy': 0, 'ram.pages-per-second': 7 });
    expect(sampleFromQueryMigrate({ status: 'none' }, 1, 1, 'setup').extra).toBeUndefined();
  });

  it('maps 9.1 postcopy-recover-setup and 10.2 postcopy-device; an unknown status keeps the phase', () => {
    expect(phaseForStatus('postcopy-recover-setup', true, 'postcopy-paused')).toBe('postcopy-paused');
    expect(phaseForStatus('postcopy-recover-setup', true, 'postcopy')).toBe('postcopy-paused');
    expect(phaseForStatus('postcopy-device', true, 'precopy')).toBe('postcopy');
    expect(phaseForStatus('some-status-of-qemu-12', false, 'precopy')).toBe('precopy');
    expect(migrationRunning('postcopy-recover-setup')).toBe(true);
    expect(migrationRunning('some-status-of-qemu-12')).toBe(true);
    expect(migrationRunning('completed')).toBe(false);
    expect(migrationRunning(undefined)).toBe(false);
  });
});
