import { afterAll, describe, expect, it } from 'vitest';
import { copyFileSync, mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { ConsoleService } from './console-service';
import { parseTimeline } from '../../shared/model/timeline';

const FIXTURE = path.resolve('test/fixtures/timelines/postcopy.ferry.jsonl');
const parsed = parseTimeline(readFileSync(FIXTURE, 'utf8'));
const id = parsed.header!.migrationId;

describe('migrations:history for a migration this process did not run (from its timeline file)', () => {
  const dir = mkdtempSync(path.join(tmpdir(), 'ferry-history-'));
  const timelines = path.join(dir, 'timelines');
  mkdirSync(timelines, { recursive: true });
  copyFileSync(FIXTURE, path.join(timelines, `${id}.ferry.jsonl`));
  // Recorded under another name (--record): found by the migration id in its header.
  const other = parseTimeline(readFileSync(FIXTURE, 'utf8').replaceAll(id, 'renamed-run'));
  writeFileSync(path.join(timelines, 'my-recording.ferry.jsonl'), `${[other.header, ...other.records.slice(1)].map((r) => JSON.stringify(r)).join('\n')}\n`);
  const service = new ConsoleService({ configDir: dir });
  afterAll(async () => {
    await service.dispose();
    rmSync(dir, { recursive: true, force: true });
  });

  it('serves every sample and every story record, with the summary and final figures', async () => {
    const r = await service.invoke('migrations:history', { id });
    if (!r.ok) throw new Error(r.error.message);
    const h = r.value as { summary: { id: string; phase: string; startedAt: number; timeline: string; final?: { outcome: string } }; samples: unknown[]; records: { type: string }[]; source: string };
    expect(h.source).toBe('timeline');
    expect(h.summary).toMatchObject({ id, phase: 'completed', startedAt: parsed.header!.createdAt, final: { outcome: 'completed' } });
    expect(h.summary.timeline).toBe(path.join(timelines, `${id}.ferry.jsonl`));
    expect(h.samples).toHaveLength(parsed.samples.length);
    expect(h.records.length).toBe(parsed.records.filter((x) => !['sample', 'guest', 'header'].includes(x.type)).length);
    expect(h.records.some((x) => x.type === 'phase')).toBe(true);
    expect(h.records.some((x) => x.type === 'end')).toBe(true);
  });

  it('finds a timeline recorded under another name by the id in its header', async () => {
    const r = await service.invoke('migrations:history', { id: 'renamed-run' });
    expect(r.ok && (r.value as { summary: { timeline: string } }).summary.timeline).toBe(path.join(timelines, 'my-recording.ferry.jsonl'));
  });

  it('says clearly when there is no such migration, and never reads outside the timeline directory', async () => {
    const r = await service.invoke('migrations:history', { id: 'nope' });
    expect(r).toMatchObject({ ok: false, error: { code: 'NOT_FOUND' } });
    expect(!r.ok && r.error.message).toMatch(/no migration with id "nope" \(not running here, and no timeline of it in /);
    expect(await service.invoke('migrations:history', { id: '../../etc/passwd' })).toMatchObject({ ok: false, error: { code: 'NOT_FOUND' } });
    expect(await service.invoke('migrations:history', { id: '' })).toMatchObject({ ok: false, error: { code: 'INVALID_REQUEST' } });
  });
});
