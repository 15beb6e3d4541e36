/**
 * docs/grafana/ferry-migrations.json: a dashboard that can be imported as is, whose every
 * query asks for a metric Ferry exposes (so the two cannot drift apart), laid out without
 * overlaps, with the console's charts in it.
 */
import { describe, expect, it } from 'vitest';
import { readFileSync } from 'node:fs';
import { METRIC_NAMES } from '../../shared/report/metrics';

interface Panel { id: number; type: string; title: string; datasource: { uid: string }; gridPos: { x: number; y: number; w: number; h: number }; targets: { expr: string; refId: string }[] }
const dash = JSON.parse(readFileSync('docs/grafana/ferry-migrations.json', 'utf8')) as { uid: string; title: string; schemaVersion: number; panels: Panel[]; templating: { list: { name: string; query: unknown }[] } };

describe('the Grafana dashboard', () => {
  it('queries only metrics Ferry exposes, through the chosen Prometheus', () => {
    const used = new Set<string>();
    for (const p of dash.panels) {
      expect(p.datasource.uid, p.title).toBe('${datasource}');
      expect(p.targets.length, p.title).toBeGreaterThan(0);
      for (const t of p.targets) for (const [name] of t.expr.matchAll(/\b(?:kubevirt|ferry)_[a-z_]+\b/g)) used.add(name);
    }
    for (const v of dash.templating.list) for (const [name] of JSON.stringify(v.query).matchAll(/\b(?:kubevirt|ferry)_[a-z_]+\b/g)) used.add(name);
    const unknown = [...used].filter((n) => !METRIC_NAMES.includes(n));
    expect(unknown).toEqual([]);
    expect(used.size).toBeGreaterThanOrEqual(12);
  });

  it('has the console\'s charts, unique ids, and no two panels on the same cells', () => {
    expect(dash.uid).toBe('ferry-migrations');
    expect(dash.schemaVersion).toBeGreaterThanOrEqual(36);
    const titles = dash.panels.map((p) => p.title);
    for (const t of ['Dirty rate vs transfer rate', 'Memory', 'Projected downtime: Ferry vs QEMU', 'Phase']) expect(titles).toContain(t);
    expect(new Set(dash.panels.map((p) => p.id)).size).toBe(dash.panels.length);
    const cells = new Set<string>();
    for (const p of dash.panels) {
      expect(p.gridPos.x + p.gridPos.w, p.title).toBeLessThanOrEqual(24);
      for (let x = p.gridPos.x; x < p.gridPos.x + p.gridPos.w; x++) {
        for (let y = p.gridPos.y; y < p.gridPos.y + p.gridPos.h; y++) {
          const k = `${x},${y}`;
          expect(cells.has(k), `${p.title} overlaps at ${k}`).toBe(false);
          cells.add(k);
        }
      }
    }
    expect(dash.templating.list.map((v) => v.name)).toEqual(['datasource', 'vm', 'migration']);
  });
});
