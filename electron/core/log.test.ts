import { afterEach, describe, expect, it } from 'vitest';
import { mkdtempSync, readFileSync, readdirSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { configureLog, logFile, recentLogLines, redact, rootLog } from './log';

const dirs: string[] = [];
afterEach(() => {
  configureLog({});
  for (const d of dirs.splice(0)) rmSync(d, { recursive: true, force: true });
});

function tempDir(): string {
  const d = mkdtempSync(path.join(tmpdir(), 'ferry-log-'));
  dirs.push(d);
  return d;
}

describe('log', () => {
  it('writes scoped lines to ferry.log and keeps them for diagnostics', () => {
    const dir = tempDir();
    configureLog({ dir });
    rootLog.child('ssh').child('root@hv1:22').warn('channel refused, queued', { open: 8 });
    const text = readFileSync(path.join(dir, 'ferry.log'), 'utf8');
    expect(text).toMatch(/^\d{4}-\d\d-\d\dT[\d:.]+Z WARN {2}ssh root@hv1:22: channel refused, queued \{"open":8\}\n$/);
    expect(logFile()).toBe(path.join(dir, 'ferry.log'));
    expect(recentLogLines(1)[0]).toContain('channel refused');
  });

  it('a log directory removed while Ferry runs is made again by the next line', () => {
    const dir = path.join(tempDir(), 'logs');
    configureLog({ dir });
    rootLog.info('first');
    rmSync(dir, { recursive: true, force: true });
    rootLog.info('after the directory went');
    expect(readFileSync(path.join(dir, 'ferry.log'), 'utf8')).toMatch(/INFO {2}after the directory went\n$/);
  });

  it('never writes a secret: keys that name one, and URL tokens, are replaced', () => {
    const dir = tempDir();
    configureLog({ dir });
    rootLog.info('console at http://127.0.0.1:8080/?token=abcDEF123', { passphrase: 'hunter2', nested: { password: 'x', host: 'hv1' } });
    const text = readFileSync(path.join(dir, 'ferry.log'), 'utf8');
    expect(text).not.toContain('hunter2');
    expect(text).not.toContain('abcDEF123');
    expect(text).toContain('"host":"hv1"');
    expect(redact({ token: 't', list: [{ secret: 's' }] })).toEqual({ token: '[redacted]', list: [{ secret: '[redacted]' }] });
  });

  it('rotates at the size limit and keeps the given number of old files', () => {
    const dir = tempDir();
    configureLog({ dir, maxBytes: 300, keep: 2 });
    for (let i = 0; i < 40; i++) rootLog.info(`line ${i} ${'x'.repeat(40)}`);
    const files = readdirSync(dir).sort();
    expect(files).toEqual(['ferry.log', 'ferry.log.1', 'ferry.log.2']);
    expect(readFileSync(path.join(dir, 'ferry.log'), 'utf8')).toContain('line 39');
    for (const f of files) expect(readFileSync(path.join(dir, f)).length).toBeLessThanOrEqual(300);
  });

  it('dropped() logs what a catch drops and yields undefined', async () => {
    configureLog({});
    const v = await Promise.reject(new Error('gone')).catch(rootLog.child('qmp').dropped('closing the monitor'));
    expect(v).toBeUndefined();
    expect(recentLogLines(1)[0]).toMatch(/WARN {2}qmp: closing the monitor: gone$/);
  });

  it('skips lines below the level', () => {
    configureLog({ level: 'warn' });
    const before = recentLogLines().length;
    rootLog.info('quiet');
    rootLog.debug('quieter');
    expect(recentLogLines().length).toBe(before);
  });
});
