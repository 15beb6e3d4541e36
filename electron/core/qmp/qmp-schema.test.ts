/**
 * The migration surface read from real `query-qmp-schema` replies of QEMU 7.2.22 and 10.0.2
 * (test/fixtures: the entities reachable from the migration commands, as QEMU sent them).
 */
import { describe, expect, it } from 'vitest';
import { readFileSync } from 'node:fs';
import path from 'node:path';
import { QmpSchema, capabilitiesFor, migrationFeatures, optionalFeatures, parametersFor } from './qmp-schema';
import type { SchemaEntity } from './qmp-schema';

const load = (v: string) => migrationFeatures(new QmpSchema(JSON.parse(readFileSync(path.join(import.meta.dirname, '../../../test/fixtures', `qmp-schema-${v}.json`), 'utf8')) as SchemaEntity[]), v === '7.2' ? '7.2.22' : '10.0.2');

describe('QMP schema: migration features', () => {
  const q72 = load('7.2');
  const q10 = load('10.0');

  it('finds what 9.1 removed in 7.2 and not in 10.0', () => {
    for (const cap of ['block', 'compress']) {
      expect(q72.capabilities).toContain(cap);
      expect(q10.capabilities).not.toContain(cap);
    }
    for (const p of ['compress-level', 'compress-threads', 'decompress-threads', 'block-incremental']) {
      expect(q72.parameters).toContain(p);
      expect(q10.parameters).not.toContain(p);
    }
    expect(q72.migrateArgs).toEqual(expect.arrayContaining(['blk', 'inc', 'uri']));
    expect(q10.migrateArgs).not.toContain('blk');
    expect(q10.migrateArgs).toEqual(expect.arrayContaining(['uri', 'channels']));
    for (const f of ['disk', 'compression']) {
      expect(q72.queryMigrateFields).toContain(f);
      expect(q10.queryMigrateFields).not.toContain(f);
    }
  });

  it('finds what 8.1–10.0 added, and offers it only there', () => {
    expect(q10.statuses).toContain('postcopy-recover-setup');
    expect(q72.statuses).not.toContain('postcopy-recover-setup');
    expect(q10.queryMigrateFields).toEqual(expect.arrayContaining(['dirty-limit-throttle-time-per-round', 'dirty-limit-ring-full-time']));
    expect(q10.migrateIncomingArgs).toContain('exit-on-error');
    expect(optionalFeatures(q72)).toEqual(['postcopy-preempt']);
    expect(optionalFeatures(q10)).toEqual(['dirty-limit', 'switchover-ack', 'avail-switchover-bandwidth', 'mapped-ram', 'postcopy-preempt', 'zero-page-detection']);
  });

  it('sets only capabilities a QEMU has: off ones it lacks are dropped, on ones refused naming it', () => {
    expect(capabilitiesFor({ events: true, compress: false }, q10, 'lab-b')).toEqual([{ capability: 'events', state: true }]);
    expect(capabilitiesFor({ events: true, compress: false }, q72, 'lab-a')).toEqual([{ capability: 'events', state: true }, { capability: 'compress', state: false }]);
    expect(() => capabilitiesFor({ compress: true }, q10, 'lab-b')).toThrow("lab-b's QEMU 10.0.2 has no migration capability compress");
    expect(() => capabilitiesFor({ 'dirty-limit': true }, q72, 'lab-a')).toThrow("lab-a's QEMU 7.2.22 has no migration capability dirty-limit");
    expect(() => parametersFor({ 'avail-switchover-bandwidth': 1 }, q72, 'lab-a')).toThrow(/no migration parameter avail-switchover-bandwidth/);
    expect(parametersFor({ 'max-bandwidth': 1 }, q10, 'lab-b')).toEqual({ 'max-bandwidth': 1 });
  });

  it('reads enums in both shapes (7.2 values, later members with features) and arrays through', () => {
    const s = new QmpSchema([
      { name: 'c', 'meta-type': 'command', 'arg-type': 'a' },
      { name: 'a', 'meta-type': 'object', members: [{ name: 'xs', type: '[e]' }] },
      { name: '[e]', 'meta-type': 'array', 'element-type': 'e' },
      { name: 'e', 'meta-type': 'enum', values: ['one', 'two'], members: [{ name: 'one' }, { name: 'two', features: ['deprecated'] }] },
    ]);
    expect(s.enumOf(s.memberType(s.argType('c'), 'xs'))).toEqual([{ name: 'one', features: [] }, { name: 'two', features: ['deprecated'] }]);
    expect(new QmpSchema([{ name: 'e', 'meta-type': 'enum', values: ['x'] }]).enumOf('e')).toEqual([{ name: 'x', features: [] }]);
    expect(s.enumOf('missing')).toEqual([]);
  });
});
