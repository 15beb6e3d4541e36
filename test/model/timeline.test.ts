import { describe, expect, it } from 'vitest';
import { readFileSync } from 'node:fs';
import { MAX_TIMELINE_LINE_CHARS, TIMELINE_VERSION, parseTimeline } from '../../shared/model/timeline';

const fixture = readFileSync('test/fixtures/timelines/converging.ferry.jsonl', 'utf8');
const lines = fixture.trimEnd().split('\n');
const header = JSON.parse(lines[0]!) as Record<string, unknown>;
const join = (ls: string[]) => `${ls.join('\n')}\n`;

describe('timeline reading checks every line', () => {
  it('reads a real recording with no problem at all', () => {
    const t = parseTimeline(fixture);
    expect(t.problems).toEqual([]);
    expect(t.notices).toEqual([]);
    expect(t.readOnly).toBe(false);
    expect(t.records).toHaveLength(lines.length);
    expect(t.truncated).toBe(false);
  });

  it('reports a line that breaks its schema with its number and why, and keeps the rest', () => {
    const bad = [...lines];
    const at = bad.findIndex((l) => l.includes('"type":"sample"'));
    const sample = JSON.parse(bad[at]!) as Record<string, unknown>;
    bad[at] = JSON.stringify({ ...sample, pass: 'three' });
    bad.splice(at + 3, 0, JSON.stringify({ type: 'phase', t: 1, phase: 'warp' }), JSON.stringify({ type: 'wormhole', t: 1 }), '[1,2]', 'garbage');
    const t = parseTimeline(join(bad));
    expect(t.problems.map((p) => p.line)).toEqual([at + 1, at + 4, at + 5, at + 6, at + 7]);
    expect(t.problems[0]!.reason).toMatch(/^sample: pass: /);
    expect(t.problems[1]!.reason).toMatch(/^phase: phase: /);
    expect(t.problems[2]!.reason).toBe('unknown record type "wormhole"');
    expect(t.problems[3]!.reason).toMatch(/not a record/);
    expect(t.problems[4]!.reason).toBe('not JSON');
    expect(t.records).toHaveLength(lines.length - 1);
    expect(t.notices).toHaveLength(1);
    expect(t.notices[0]).toMatch(/^5 lines could not be read and were left out: line \d+ \(sample: pass: .*\), line \d+ .*, and 2 more\.$/);
    // A bad line is not a truncation: the end is there.
    expect(t.truncated).toBe(false);
  });

  it('refuses a header of another format or with broken fields, naming the field', () => {
    const other = parseTimeline(join([JSON.stringify({ ...header, format: 'other' }), ...lines.slice(1)]));
    expect(other.header).toBeUndefined();
    expect(other.problems[0]).toEqual({ line: 1, reason: 'header of another format ("other", not ferry-timeline)' });
    const broken = parseTimeline(join([JSON.stringify({ ...header, createdAt: 'yesterday' }), ...lines.slice(1)]));
    expect(broken.header).toBeUndefined();
    expect(broken.problems[0]!.reason).toMatch(/^header: createdAt: /);
  });

  it('opens a newer format read-only: what it understands is shown, the rest counted and skipped', () => {
    const v = TIMELINE_VERSION + 1;
    const newer = [
      JSON.stringify({ ...header, version: v, mode: 'replay', colour: 'blue' }),
      ...lines.slice(1, 6),
      JSON.stringify({ type: 'hologram', t: 5 }),
      JSON.stringify({ type: 'phase', t: 6, phase: 'teleport', from: 'precopy' }),
      ...lines.slice(6),
    ];
    const t = parseTimeline(join(newer));
    expect(t.readOnly).toBe(true);
    expect(t.header?.version).toBe(v);
    expect(t.skipped).toBe(2);
    expect(t.problems).toEqual([]);
    expect(t.records).toHaveLength(lines.length);
    expect(t.samples.length).toBe(parseTimeline(fixture).samples.length);
    expect(t.notices).toEqual([`Written by a newer Ferry (timeline format ${v}; this Ferry reads format ${TIMELINE_VERSION}): opened read-only; 2 lines it does not understand were skipped.`]);
  });

  it('keeps the truncated-file behaviour: a cut last line means truncated, a whole one without newline is kept', () => {
    const cut = fixture.slice(0, fixture.lastIndexOf('{"type":"end"') + 20);
    const t = parseTimeline(cut);
    expect(t.truncated).toBe(true);
    expect(t.problems).toEqual([]);
    const whole = parseTimeline(fixture.trimEnd());
    expect(whole.truncated).toBe(false);
    expect(whole.end?.outcome).toBe('completed');
  });

  it('tolerates CRLF line ends and a byte-order mark', () => {
    const t = parseTimeline(`\uFEFF${lines.join('\r\n')}\r\n`);
    expect(t.problems).toEqual([]);
    expect(t.records).toHaveLength(lines.length);
  });

  it('skips a line longer than the cap instead of parsing it', () => {
    const huge = JSON.stringify({ type: 'note', t: 1, text: 'x'.repeat(MAX_TIMELINE_LINE_CHARS) });
    const t = parseTimeline(join([lines[0]!, huge, ...lines.slice(1)]));
    expect(t.problems).toHaveLength(1);
    expect(t.problems[0]).toMatchObject({ line: 2 });
    expect(t.problems[0]!.reason).toMatch(/longer than 16 MiB/);
    expect(t.records).toHaveLength(lines.length);
  });
});
