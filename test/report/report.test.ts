import { readFileSync } from 'node:fs';
import path from 'node:path';
import { describe, expect, it } from 'vitest';
import { parseTimeline } from '../../shared/model/timeline';
import type { TimelineRecord } from '../../shared/model/timeline';
import { chartSpecs, entryFromTimeline, formatUnit, logLine, passStarts, phaseSpans, rowsOf, sampleAt } from '../../shared/report/picture';
import { escapeXml, niceStep, svgChart } from '../../shared/report/svg-chart';
import { compareData, migrationStart } from '../../shared/report/compare';
import { compareHtml, reportHtml } from '../../shared/report/report-html';
import { CSV_COLUMNS, timelineToCsv } from '../../shared/report/export';

const fixture = (name: string) => readFileSync(path.resolve('test/fixtures/timelines', `${name}.ferry.jsonl`), 'utf8');
const postcopy = parseTimeline(fixture('postcopy'));
const converging = parseTimeline(fixture('converging'));

describe('a recorded timeline as a console entry', () => {
  it('keeps every sample, every phase (starting where the first record came from) and the end', () => {
    const e = entryFromTimeline(postcopy);
    expect(e.samples).toHaveLength(postcopy.samples.length);
    expect(e.phases[0]).toEqual({ phase: 'preflight', t: postcopy.header!.createdAt });
    expect(e.phases.map((p) => p.phase)).toContain('postcopy');
    expect(e.phases.at(-1)!.phase).toBe('completed');
    expect(e.final?.outcome).toBe('completed');
    expect(e.final).not.toHaveProperty('type');
    expect(e.summary).toMatchObject({ id: postcopy.header!.migrationId, phase: 'completed', startedAt: postcopy.header!.createdAt });
    expect(e.log.some((l) => l.kind === 'policy' && l.text.includes('postcopy'))).toBe(true);
  });

  it('an entry cut short ends in the last phase it reached, with no final figures', () => {
    const text = fixture('postcopy');
    const cut = parseTimeline(text.slice(0, text.indexOf('"phase":"postcopy"') - 30));
    expect(cut.truncated).toBe(true);
    const e = entryFromTimeline(cut);
    expect(e.final).toBeUndefined();
    expect(e.summary.phase).toBe('precopy');
  });

  it('picks the sample under a cursor: the last one at or before it, the first before any', () => {
    const s = postcopy.samples;
    const t0 = postcopy.header!.createdAt;
    expect(sampleAt(s, t0, -5)).toBe(s[0]);
    expect(sampleAt(s, t0, 1e6)).toBe(s.at(-1));
    const mid = s[10]!;
    expect(sampleAt(s, t0, (mid.t - t0) / 1000)).toBe(mid);
    expect(sampleAt(s, t0, (mid.t - t0) / 1000 - 0.001)).toBe(s[9]);
    expect(sampleAt([], t0, 1)).toBeUndefined();
  });

  it('charts: optional ones only when their data exists; the downtime chart carries the limit and the actual downtime', () => {
    const e = entryFromTimeline(postcopy);
    const ids = chartSpecs(e, rowsOf(e.samples, e.summary.startedAt)).map((c) => c.id);
    expect(ids).toEqual(['rates', 'memory', 'downtime', 'stall', 'requests']);
    const c = entryFromTimeline(converging);
    const specs = chartSpecs(c, rowsOf(c.samples, c.summary.startedAt));
    expect(specs.map((x) => x.id)).not.toContain('requests');
    const dt = specs.find((x) => x.id === 'downtime')!;
    expect(dt.marks?.map((m) => m.label)).toEqual(['limit 50 ms', `actual ${c.final!.downtimeMs} ms`]);
  });

  it('phase bands and pass markers are in seconds since the start', () => {
    const e = entryFromTimeline(converging);
    const start = e.summary.startedAt;
    const spans = phaseSpans(e.phases, start, e.samples.at(-1)!.t);
    expect(spans[0]!.from).toBe(0);
    for (let i = 1; i < spans.length; i++) expect(spans[i]!.from).toBeCloseTo(spans[i - 1]!.to, 6);
    expect(passStarts(e.samples, start).length).toBe((e.final!.passes ?? 0) - 1);
  });

  it('log lines name what happened', () => {
    const gap: TimelineRecord = { type: 'gap', t: 5, side: 'source', fromT: 1000, toT: 3500, reason: 'ssh dropped' };
    expect(logLine(gap)).toEqual({ t: 5, kind: 'error', text: 'source: no samples for 2.5 s (ssh dropped)' });
    expect(logLine({ type: 'control', t: 1, who: 'user', action: 'cancel', result: { ok: false, error: 'too late' } })?.kind).toBe('error');
    expect(logLine({ type: 'sample', t: 1, elapsedMs: 0, status: 'active', phase: 'precopy' })).toBeUndefined();
  });

  it('units read well', () => {
    expect(formatUnit('MB/s', 40e6)).toBe('40 MB/s');
    expect(formatUnit('MB', 2.5e6)).toBe('2.5 MB');
    expect(formatUnit('ms', 0.6)).toBe('0.6 ms');
    expect(formatUnit('ms', 61.4)).toBe('61 ms');
  });
});

describe('SVG charts', () => {
  it('draw one path per series with data, phase bands, marks, and escape text', () => {
    const e = entryFromTimeline(postcopy);
    const rows = rowsOf(e.samples, e.summary.startedAt);
    const spec = { ...chartSpecs(e, rows)[0]!, title: 'Rates <&> "quoted"' };
    const svg = svgChart({ spec, rows, phases: phaseSpans(e.phases, e.summary.startedAt, e.samples.at(-1)!.t), passes: [1, 2] });
    expect(svg.startsWith('<svg xmlns="http://www.w3.org/2000/svg"')).toBe(true);
    expect(svg).toContain('Rates &lt;&amp;&gt; &quot;quoted&quot;');
    expect(svg.match(/<path class="series"/g)).toHaveLength(2);
    expect(svg).toContain('data-phase="postcopy"');
    expect(svg.match(/class="pass-marker"/g)).toHaveLength(2);
    expect(svg).not.toMatch(/NaN|undefined|Infinity/);
  });

  it('a series with no data draws nothing, and an empty chart still renders', () => {
    const svg = svgChart({ spec: { id: 'x', title: 'x', unit: 'ms', series: [{ key: 'none', label: 'none', color: '#000' }] }, rows: [] });
    expect(svg).not.toContain('class="series"');
    expect(svg).not.toMatch(/NaN|Infinity/);
  });

  it('long series are downsampled to about the pixel width', () => {
    const rows = Array.from({ length: 20_000 }, (_, i) => ({ t: i / 10, v: Math.sin(i / 50) + 1 }));
    const svg = svgChart({ spec: { id: 'x', title: 'x', unit: 'count', series: [{ key: 'v', label: 'v', color: '#000' }] }, rows, width: 500 });
    const d = /class="series"[^>]*d="([^"]+)"/.exec(svg)![1]!;
    expect(d.split('L').length).toBeLessThanOrEqual(500);
    expect(d.split('L').length).toBeGreaterThan(300);
  });

  it('tick steps are 1, 2 or 5 times a power of ten', () => {
    expect(niceStep(100)).toBe(50);
    expect(niceStep(7)).toBe(2);
    expect(niceStep(0)).toBe(1);
    expect(escapeXml(`<a href='x'>`)).toBe('&lt;a href=&#39;x&#39;&gt;');
  });
});

describe('comparison', () => {
  it('aligns each run at its own migration start and puts the final figures side by side', () => {
    const a = entryFromTimeline(converging);
    const b = entryFromTimeline(postcopy);
    const c = compareData([{ name: 'pre', entry: a }, { name: 'post', entry: b, truncated: true }]);
    expect(c.columns.map((x) => x.name)).toEqual(['pre', 'post']);
    const first0 = c.rows.find((r) => r.remaining_0 !== undefined)!;
    const first1 = c.rows.find((r) => r.remaining_1 !== undefined)!;
    expect(first0.t).toBeCloseTo((a.samples.find((s) => s.t >= migrationStart(a))!.t - migrationStart(a)) / 1000, 6);
    expect(first1.t).toBeLessThan(1);
    expect(c.rows.every((r, i) => i === 0 || r.t >= c.rows[i - 1]!.t)).toBe(true);
    const row = (label: string) => c.table.find((r) => r.label === label)!.values;
    expect(row('Mode')).toEqual(['precopy', 'postcopy after 2 passes']);
    expect(row('Outcome')).toEqual(['completed', 'completed (truncated)']);
    expect(row('Passes')).toEqual([String(a.final!.passes), String(b.final!.passes)]);
    expect(c.specs.map((s) => s.series.length)).toEqual(c.specs.map(() => 2));
    // each run's switchover, in overlay time: the pre-copy one stops the VM, the other goes postcopy
    expect(c.switchovers.map((m) => m.label)).toEqual(['pre: VM stopped', 'post: postcopy starts']);
    const sw = b.phases.find((p) => p.phase === 'postcopy')!;
    expect(c.switchovers[1]!.x).toBeCloseTo((sw.t - migrationStart(b)) / 1000, 6);
  });

  it('an auto-converge run QEMU never throttled still gets the throttle chart (at 0); a comparison without auto-converge does not', () => {
    const a = entryFromTimeline(converging);
    const b = entryFromTimeline(postcopy);
    expect(compareData([{ name: 'pre', entry: a }, { name: 'post', entry: b }]).specs.map((s) => s.id)).not.toContain('throttle');
    const ac = { ...a, samples: a.samples.map((s) => ({ ...s, cpuThrottlePct: undefined })), summary: { ...a.summary, plan: { ...a.summary.plan, autoConverge: true } } };
    expect(compareData([{ name: 'ac', entry: ac }, { name: 'post', entry: b }]).specs.map((s) => s.id)).toContain('throttle');
  });
});

describe('HTML reports', () => {
  it('are self-contained: a CSP that forbids fetching, no script, no external URL', () => {
    for (const html of [reportHtml(postcopy, 'postcopy.ferry.jsonl'), compareHtml([{ name: 'a', timeline: converging }, { name: 'b', timeline: postcopy }])]) {
      expect(html).toContain(`content="default-src 'none'; style-src 'unsafe-inline'; img-src data:"`);
      expect(html).not.toMatch(/<script|<link|<img|src=|url\(/i);
      expect(html.replace(/xmlns="http:\/\/www\.w3\.org\/2000\/svg"/g, '')).not.toMatch(/https?:\/\//);
    }
  });

  it('hold the final figures, the charts, the plan, the preflight and every event', () => {
    const withPreflight = parseTimeline(`${fixture('converging').trimEnd().split('\n').map((l, i) => (i === 1 ? `${JSON.stringify({ type: 'preflight', t: 1, result: { ok: true, tookMs: 5, checks: [{ id: 'mem', title: 'Free memory <dest>', status: 'warn', reason: 'tight', fix: 'free some' }] } })}\n${l}` : l)).join('\n')}\n`);
    const html = reportHtml(withPreflight, 'c.ferry.jsonl');
    const e = entryFromTimeline(withPreflight);
    expect(html).toContain(`data-figure="downtime"><dt>Downtime</dt><dd>${e.final!.downtimeMs} ms</dd>`);
    expect(html.match(/<svg xmlns/g)!.length).toBe(4);
    expect(html).toContain('Free memory &lt;dest&gt;');
    expect(html).toContain('class="status-warn">warn');
    expect(html.match(/<tr><td>\+/g)).toHaveLength(e.log.length);
    expect(html).toContain('plan.maxBandwidth');
    expect(html).not.toContain('truncated');
  });

  it('say when the timeline was truncated', () => {
    const text = fixture('converging');
    const html = reportHtml(parseTimeline(text.slice(0, text.length / 2)), 'cut');
    expect(html).toContain('This timeline is truncated');
    expect(html).toContain('No end recorded');
  });
});

describe('CSV export', () => {
  it('one row per sample with Ferry\'s projection next to QEMU\'s', () => {
    const csv = timelineToCsv({ samples: [{ t: 1, elapsedMs: 0, status: 'active', phase: 'precopy', expectedDowntimeMs: 300, projection: { verdict: 'slow', switchoverDowntimeMs: 40 } }] }).trim().split('\n');
    expect(csv).toHaveLength(2);
    const cells = csv[1]!.split(',');
    expect(cells[CSV_COLUMNS.indexOf('ferryDowntimeMs')]).toBe('40');
    expect(cells[CSV_COLUMNS.indexOf('verdict')]).toBe('slow');
    expect(cells[CSV_COLUMNS.indexOf('expectedDowntimeMs')]).toBe('300');
  });
});
