/** Cross-version decisions on the real 7.2 and 10.0 schemas (test/fixtures). */
import { describe, expect, it } from 'vitest';
import { readFileSync } from 'node:fs';
import path from 'node:path';
import { QmpSchema, migrationFeatures } from '../qmp/qmp-schema';
import type { SchemaEntity } from '../qmp/qmp-schema';
import { MigrationPlanSchema } from '../../../shared/model/migration';
import { checkDirection, firmwareFor, linkEstimate, newerFeatureSettings } from './cross-version';

const load = (v: string, full: string) => migrationFeatures(new QmpSchema(JSON.parse(readFileSync(path.join(import.meta.dirname, '../../../test/fixtures', `qmp-schema-${v}.json`), 'utf8')) as SchemaEntity[]), full);
const q72 = load('7.2', '7.2.22');
const q10 = load('10.0', '10.0.2');
const plan = (p: Record<string, unknown>) => MigrationPlanSchema.parse({ vm: 'demo', from: 'a', to: 'b', ...p });

describe('cross-version', () => {
  it('refuses only an older destination, naming both', () => {
    expect(() => checkDirection('10.0.2', '7.2.22', 'a', 'b')).toThrow("refused: b runs QEMU 7.2.22, older than the source's QEMU 10.0.2 on a");
    expect(() => checkDirection('7.2.22', '10.0.2', 'a', 'b')).not.toThrow();
    expect(() => checkDirection('7.2.22', '7.2.22', 'a', 'b')).not.toThrow();
    expect(() => checkDirection(undefined, '7.2.22', 'a', 'b')).not.toThrow();
  });

  it('takes the same firmware from the destination QEMU\'s own folder', () => {
    expect(firmwareFor('/usr/share/qemu/qboot.rom', undefined, { binary: 'x', dataDir: '/opt/q10/share/qemu' })).toBe('/opt/q10/share/qemu/qboot.rom');
    expect(firmwareFor('/opt/q10/share/qemu/qboot.rom', { binary: 'x', dataDir: '/opt/q10/share/qemu' }, undefined)).toBe('/usr/share/qemu/qboot.rom');
    expect(firmwareFor('/srv/fw/custom.rom', undefined, { binary: 'x', dataDir: '/opt/q' })).toBe('/srv/fw/custom.rom');
    expect(firmwareFor(undefined, undefined, undefined)).toBeUndefined();
  });

  it('estimates the link from learned switchovers: one is enough', () => {
    expect(linkEstimate([])).toBeUndefined();
    expect(linkEstimate([{ bytes: 500_000, downtimeMs: 5 }])).toBeUndefined();
    expect(linkEstimate([{ bytes: 20_000_000, downtimeMs: 23 }])).toBeCloseTo(1e9, -6);
    expect(linkEstimate([{ bytes: 10_000_000, downtimeMs: 13 }, { bytes: 30_000_000, downtimeMs: 33 }])).toBeCloseTo(1e9, -6);
  });

  it('newer features only where the schema has them, on the end that needs them', () => {
    expect(newerFeatureSettings(plan({ dirtyLimitMBps: 5 }), q10, q72)).toMatchObject({ sourceCaps: { 'dirty-limit': true }, destCaps: {}, sourceParams: { 'vcpu-dirty-limit': 5 } });
    expect(() => newerFeatureSettings(plan({ dirtyLimitMBps: 5 }), q72, q10)).toThrow(/dirty-limit needs the capability dirty-limit, which a's QEMU 7\.2\.22 does not have/);
    expect(newerFeatureSettings(plan({ switchoverAck: true }), q10, q10)).toMatchObject({ sourceCaps: { 'return-path': true, 'switchover-ack': true }, destCaps: { 'return-path': true, 'switchover-ack': true } });
    expect(() => newerFeatureSettings(plan({ switchoverAck: true }), q10, q72)).toThrow(/b's QEMU 7\.2\.22/);
    const learned = newerFeatureSettings(plan({ switchoverBandwidth: 'auto' }), q10, q10, 812_000_000);
    expect(learned.sourceParams).toEqual({ 'avail-switchover-bandwidth': 812_000_000 });
    expect(learned.notes[0]).toMatch(/812 MB\/s \(Ferry's link estimate/);
    const none = newerFeatureSettings(plan({ switchoverBandwidth: 'auto' }), q10, q10);
    expect(none.sourceParams).toEqual({});
    expect(none.notes[0]).toMatch(/no link estimate yet/);
    expect(newerFeatureSettings(plan({}), q72, q72)).toEqual({ sourceCaps: {}, destCaps: {}, sourceParams: {}, notes: [] });
    expect(MigrationPlanSchema.safeParse({ vm: 'd', from: 'a', to: 'b', autoConverge: true, dirtyLimitMBps: 5 }).success).toBe(false);
  });
});
