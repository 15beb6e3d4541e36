import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { closeSync, mkdtempSync, openSync, readFileSync, rmSync, truncateSync, statSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { TimelineWriter } from './timeline-writer';
import { CSV_COLUMNS, readTimeline, streamLines, timelineToCsv, timelineToJson } from './timeline-reader';
import { MAX_TIMELINE_LINE_CHARS, TimelineParser, parseTimeline } from '../../../shared/model/timeline';
import type { TimelineHeader } from '../../../shared/model/timeline';

const header: TimelineHeader = {
  type: 'header', format: 'ferry-timeline', version: 1, ferryVersion: '0.1.0', migrationId: 'm1', createdAt: 1000,
  mode: 'engine', source: { id: 'lab-a', label: 'local' }, destination: { id: 'lab-b', label: 'local' }, vm: { name: 'demo' },
};

describe('timeline writer and reader', () => {
  let dir: string;
  beforeEach(() => {
    dir = mkdtempSync(path.join(tmpdir(), 'ferry-tl-'));
  });
  afterEach(() => rmSync(dir, { recursive: true, force: true }));

  const writeSample = (w: TimelineWriter, i: number) =>
    w.append({ type: 'sample', t: 1000 + i * 100, elapsedMs: i * 100, status: 'active', phase: 'precopy', pass: 1 + Math.floor(i / 3), remainingBytes: 1e6 - i, guest: { side: 'source', seq: i, achievedBytesPerS: 1, stallMs: 0.5 } });

  it('writes the header at once and the rest in order, and reads them back', () => {
    const file = path.join(dir, 'sub', 'm1.ferry.jsonl');
    const w = new TimelineWriter(file, header, 10_000);
    expect(readFileSync(file, 'utf8').split('\n')[0]).toBe(JSON.stringify(header));
    w.append({ type: 'phase', t: 1001, phase: 'precopy', from: 'setup' });
    for (let i = 0; i < 5; i++) writeSample(w, i);
    w.append({ type: 'end', t: 2000, outcome: 'completed', downtimeMs: 12 });
    w.close();
    const t = readTimeline(file);
    expect(t.header).toEqual(header);
    expect(t.truncated).toBe(false);
    expect(t.records.map((r) => r.type)).toEqual(['header', 'phase', 'sample', 'sample', 'sample', 'sample', 'sample', 'end']);
    expect(t.samples).toHaveLength(5);
    expect(t.samples[4]).toMatchObject({ elapsedMs: 400, pass: 2 });
    expect(t.end).toMatchObject({ outcome: 'completed', downtimeMs: 12 });
  });

  it('flushes by itself within the flush period', async () => {
    const file = path.join(dir, 'a.ferry.jsonl');
    const w = new TimelineWriter(file, header, 50);
    writeSample(w, 0);
    expect(readFileSync(file, 'utf8').split('\n').filter(Boolean)).toHaveLength(1);
    await new Promise((r) => setTimeout(r, 120));
    expect(readFileSync(file, 'utf8').split('\n').filter(Boolean)).toHaveLength(2);
    w.close();
  });

  it('opens a file cut in the middle of a line with every complete line, and says it was truncated', () => {
    const file = path.join(dir, 'cut.ferry.jsonl');
    const w = new TimelineWriter(file, header, 10_000);
    for (let i = 0; i < 10; i++) writeSample(w, i);
    w.close();
    const size = statSync(file).size;
    truncateSync(file, size - 25); // the writer died in the middle of the last sample
    const t = readTimeline(file);
    expect(t.truncated).toBe(true);
    expect(t.samples).toHaveLength(9);
    expect(t.samples.at(-1)?.elapsedMs).toBe(800);
    // garbage in the middle is skipped and reported, the rest kept
    const lines = readFileSync(file, 'utf8').split('\n');
    lines.splice(3, 0, '{"type": "sample", broken');
    writeFileSync(file, lines.join('\n'));
    const t2 = readTimeline(file);
    expect(t2.samples).toHaveLength(9);
    expect(t2.problems).toEqual([{ line: 4, reason: 'not JSON' }]);
    expect(t2.notices.join(' ')).toContain('line 4 (not JSON)');
  });

  it('refuses a file that is not a timeline', () => {
    const file = path.join(dir, 'x.jsonl');
    writeFileSync(file, '{"hello": 1}\n');
    expect(() => readTimeline(file)).toThrow(/not a Ferry timeline/);
    expect(() => readTimeline(path.join(dir, 'missing'))).toThrow(/cannot read timeline/);
  });

  it('exports CSV with one row per sample and JSON with everything', () => {
    const file = path.join(dir, 'e.ferry.jsonl');
    const w = new TimelineWriter(file, header, 10_000);
    for (let i = 0; i < 4; i++) writeSample(w, i);
    w.append({ type: 'note', t: 5, text: 'a "quoted", comma' });
    w.close();
    const t = readTimeline(file);
    const csv = timelineToCsv(t).trim().split('\n');
    expect(csv[0]).toBe(CSV_COLUMNS.join(','));
    expect(csv).toHaveLength(5);
    expect(csv[2]!.split(',')[CSV_COLUMNS.indexOf('pass')]).toBe('1');
    expect(csv[2]!.split(',')[CSV_COLUMNS.indexOf('guestStallMs')]).toBe('0.5');
    const json = JSON.parse(timelineToJson(t));
    expect(json.header.migrationId).toBe('m1');
    expect(json.records).toHaveLength(5);
    expect(json.truncated).toBe(true);
  });

  it('streams a file in chunks: the same timeline as the whole text, characters split across chunks intact', () => {
    const file = path.join(dir, 's.ferry.jsonl');
    const w = new TimelineWriter(file, header, 10_000);
    for (let i = 0; i < 30; i++) {
      writeSample(w, i);
      w.append({ type: 'note', t: 1000 + i, text: `naïve — 漢字 😀 ${i}` });
    }
    w.append({ type: 'end', t: 9000, outcome: 'completed' });
    w.close();
    const whole = parseTimeline(readFileSync(file, 'utf8'));
    for (const chunk of [1, 3, 7, 4096]) {
      const fd = openSync(file, 'r');
      const p = new TimelineParser();
      const streamed = p.finish(streamLines(fd, p, chunk));
      closeSync(fd);
      expect(streamed).toEqual(whole);
    }
    expect(readTimeline(file)).toEqual(whole);
    expect(whole.records.filter((r) => r.type === 'note').at(-1)).toMatchObject({ text: 'naïve — 漢字 😀 29' });
  });

  it('streams past a line longer than the cap: reported by number, the lines after it read', () => {
    const file = path.join(dir, 'long.ferry.jsonl');
    const note = (text: string) => JSON.stringify({ type: 'note', t: 1, text });
    writeFileSync(file, [JSON.stringify(header), note('before'), note('y'.repeat(MAX_TIMELINE_LINE_CHARS + 10)), note('after'), ''].join('\n'));
    const t = readTimeline(file);
    expect(t.problems).toHaveLength(1);
    expect(t.problems[0]).toMatchObject({ line: 3 });
    expect(t.records.map((r) => (r.type === 'note' ? r.text : r.type))).toEqual(['header', 'before', 'after']);
  });

  it('reports every unreadable line with its number (nothing dropped silently)', () => {
    const file = path.join(dir, 'bad.ferry.jsonl');
    const w = new TimelineWriter(file, header, 10_000);
    for (let i = 0; i < 3; i++) writeSample(w, i);
    w.append({ type: 'end', t: 2000, outcome: 'completed' });
    w.close();
    const ls = readFileSync(file, 'utf8').split('\n');
    ls.splice(2, 0, JSON.stringify({ type: 'sample', t: 'soon', elapsedMs: 0, status: 'active', phase: 'precopy' }));
    writeFileSync(file, ls.join('\n'));
    const t = readTimeline(file);
    expect(t.samples).toHaveLength(3);
    expect(t.problems).toEqual([{ line: 3, reason: expect.stringMatching(/^sample: t: /) }]);
    expect(t.notices[0]).toMatch(/^1 line could not be read and was left out: line 3 \(sample: t: /);
  });
});
