import { mkdtempSync, readFileSync, rmSync, writeFileSync, mkdirSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { listTimelines, readTimelineText } from './timeline-files';
import { defaultReportPath, writeCompare, writeReport } from './report';
import { main } from '../../cli';

const fixture = (n: string) => path.resolve('test/fixtures/timelines', `${n}.ferry.jsonl`);
let dir: string;
beforeEach(() => {
  dir = mkdtempSync(path.join(tmpdir(), 'ferry-tl-'));
});
afterEach(() => rmSync(dir, { recursive: true, force: true }));

describe('the timeline directory', () => {
  it('lists timelines newest first with their VM, hosts and outcome; skips what is not one', async () => {
    const text = readFileSync(fixture('converging'), 'utf8');
    writeFileSync(path.join(dir, 'a.ferry.jsonl'), text);
    writeFileSync(path.join(dir, 'cut.ferry.jsonl'), text.slice(0, text.length / 2));
    writeFileSync(path.join(dir, 'notes.jsonl'), '{"hello":1}\n');
    writeFileSync(path.join(dir, 'readme.txt'), 'x');
    mkdirSync(path.join(dir, 'sub.jsonl'));
    const list = await listTimelines(dir);
    expect(list.map((l) => l.name).sort()).toEqual(['a.ferry.jsonl', 'cut.ferry.jsonl']);
    const a = list.find((l) => l.name === 'a.ferry.jsonl')!;
    expect(a).toMatchObject({ vm: 'demo', from: 'lab-a', to: 'lab-b', outcome: 'completed', bytes: Buffer.byteLength(text) });
    expect(list.find((l) => l.name === 'cut.ferry.jsonl')!.outcome).toBe('unfinished');
    expect(await listTimelines(path.join(dir, 'missing'))).toEqual([]);
  });

  it('reads one by bare name only', async () => {
    writeFileSync(path.join(dir, 'a.ferry.jsonl'), 'x\n');
    expect(await readTimelineText(dir, 'a.ferry.jsonl')).toBe('x\n');
    await expect(readTimelineText(dir, '../etc/passwd.jsonl')).rejects.toMatchObject({ code: 'INVALID_REQUEST' });
    await expect(readTimelineText(dir, '.hidden.jsonl')).rejects.toMatchObject({ code: 'INVALID_REQUEST' });
    await expect(readTimelineText(dir, 'gone.ferry.jsonl')).rejects.toMatchObject({ code: 'NOT_FOUND' });
  });
});

describe('report files', () => {
  it('a report goes beside its timeline by default, and a compare needs two timelines', async () => {
    expect(defaultReportPath('/x/run-1.ferry.jsonl')).toBe('/x/run-1.report.html');
    const src = path.join(dir, 'p.ferry.jsonl');
    writeFileSync(src, readFileSync(fixture('postcopy')));
    const r = await writeReport(src);
    expect(r.output).toBe(path.join(dir, 'p.report.html'));
    expect(readFileSync(r.output, 'utf8')).toContain('<h1>Ferry report: demo lab-a → lab-b</h1>');
    await expect(writeCompare([src], path.join(dir, 'c.html'))).rejects.toMatchObject({ code: 'INVALID_REQUEST' });
    const c = await writeCompare([fixture('converging'), src], path.join(dir, 'c.html'), ['pre', 'post']);
    expect(readFileSync(c.output, 'utf8')).toContain('Ferry comparison: pre vs post');
  });

  it('ferry report / ferry compare: files written, truncation said, bad input named', async () => {
    const out: string[] = [];
    const err: string[] = [];
    const sink = (a: string[]) => ({ write: (s: string) => a.push(s) }) as unknown as NodeJS.WritableStream;
    const cut = path.join(dir, 'cut.ferry.jsonl');
    const text = readFileSync(fixture('converging'), 'utf8');
    writeFileSync(cut, text.slice(0, text.length / 2));
    expect(await main(['report', cut, '-o', path.join(dir, 'r.html')], sink(out), sink(err))).toBe(0);
    expect(out.join('')).toContain(`wrote ${path.join(dir, 'r.html')}`);
    expect(err.join('')).toContain('is truncated');
    expect(readFileSync(path.join(dir, 'r.html'), 'utf8')).toContain('This timeline is truncated');
    expect(await main(['compare', fixture('converging'), fixture('postcopy'), '-o', path.join(dir, 'c.html')], sink(out), sink(err))).toBe(0);
    expect(await main(['compare', fixture('converging'), fixture('postcopy')], sink(out), sink(err))).toBe(2);
    expect(err.join('')).toContain('compare needs -o FILE.html');
    writeFileSync(path.join(dir, 'junk.jsonl'), 'not json\n');
    expect(await main(['report', path.join(dir, 'junk.jsonl')], sink(out), sink(err))).toBe(1);
    expect(err.join('')).toContain('is not a Ferry timeline');
    expect(await main(['report', path.join(dir, 'none.jsonl')], sink(out), sink(err))).toBe(1);
    expect(err.join('')).toContain('cannot read timeline');
  });
});
