import { describe, expect, it } from 'vitest';
import { MigrationPlanSchema } from '../../../shared/model/migration';
import { LIBVIRT_UNLIMITED_MIBS, mibPerSecond, migrateOptions, tcpMigrateUri, unsupportedByLibvirt } from './libvirt-plan';

const plan = (p: Record<string, unknown> = {}) => MigrationPlanSchema.parse({ vm: 'web server ☃', from: 'a', to: 'b', ...p });

describe('a plan as virsh migrate options', () => {
  it('moves a persistent domain (defined there, undefined here) and keeps a transient one transient', () => {
    expect(migrateOptions(plan(), true, 'tcp://10.0.0.2').flags).toEqual(['--live', '--persistent', '--undefinesource', '--bandwidth', String(LIBVIRT_UNLIMITED_MIBS), '--migrateuri', 'tcp://10.0.0.2']);
    expect(migrateOptions(plan(), false, undefined).flags).toEqual(['--live', '--bandwidth', String(LIBVIRT_UNLIMITED_MIBS)]);
    const temporary = migrateOptions(plan({ persistent: false, undefineSource: false }), true, undefined);
    expect(temporary).toMatchObject({ persistent: false, undefineSource: false });
    expect(temporary.flags).not.toContain('--persistent');
  });

  it('carries bandwidth in MiB/s, postcopy, auto-converge, xbzrle, parallel connections and copy-storage', () => {
    const o = migrateOptions(plan({ maxBandwidth: 60e6, mode: 'postcopy', autoConverge: true, cpuThrottleInitial: 20, cpuThrottleIncrement: 10, xbzrleCacheBytes: 64 << 20, multifdChannels: 4, copyStorage: true, downtimeLimitMs: 80 }), true, undefined);
    expect(o.flags).toEqual([
      '--live', '--persistent', '--undefinesource', '--bandwidth', '57', '--postcopy',
      '--auto-converge', '--auto-converge-initial', '20', '--auto-converge-increment', '10',
      '--compressed', '--comp-methods', 'xbzrle', '--comp-xbzrle-cache', String(64 << 20),
      '--parallel', '--parallel-connections', '4', '--copy-storage-all',
    ]);
    expect(o.parameters).toMatchObject({ bandwidthMiBs: 57, downtimeLimitMs: 80, parallelConnections: 4 });
    expect(migrateOptions(plan({ policy: { name: 'postcopy-when-never' } }), true, undefined).flags).toContain('--postcopy');
  });

  it('rounds to libvirt units without reaching 0, brackets IPv6, and names what libvirt cannot do', () => {
    expect(mibPerSecond(1)).toBe(1);
    expect(mibPerSecond(100 * 1024 * 1024)).toBe(100);
    expect(tcpMigrateUri('fd00::2', 49152)).toBe('tcp://[fd00::2]:49152');
    expect(tcpMigrateUri('10.0.0.2')).toBe('tcp://10.0.0.2');
    expect(unsupportedByLibvirt(plan({ keepSource: true, copyStorage: true, storageBandwidth: 1e6 })).map((x) => x.split(':')[0])).toEqual(['keepSource', 'storageBandwidth']);
    expect(unsupportedByLibvirt(plan())).toEqual([]);
  });
});
