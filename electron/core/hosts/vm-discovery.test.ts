import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { spawn, spawnSync } from 'node:child_process';
import type { ChildProcess } from 'node:child_process';
import { LocalTransport } from '../transport/local-transport';
import { runtimeRowsByFiles, runtimeRowsByShell } from './vm-discovery';

describe('the runtime dir listing: files read here, or one shell on the host, say the same', () => {
  const dir = mkdtempSync(path.join(tmpdir(), 'ferry-list-'));
  const local = new LocalTransport();
  const record = (name: string) => `{\n  "version": 1,\n  "name": "${name}",\n  "argv": ["qemu-system-x86_64", "-m", "64M", "-name", "a\\tb) c"]\n}\n`;
  const vm = (name: string, files: Record<string, string>) => {
    mkdirSync(path.join(dir, name), { recursive: true });
    for (const [f, text] of Object.entries(files)) writeFileSync(path.join(dir, name, f), text);
  };
  let deadPid = 0;
  let sleeper: ChildProcess; // a live process whose state letter holds still (S)

  beforeAll(() => {
    sleeper = spawn('sleep', ['600'], { stdio: 'ignore' });
    deadPid = Number(spawnSync('sh', ['-c', 'echo $$']).stdout.toString().trim()); // a pid whose process has exited
    vm('alive', { 'argv.json': record('alive'), pid: `${sleeper.pid}\n` });
    vm('dead', { 'argv.json': record('dead'), pid: `${deadPid}\n` });
    vm('garbage-pid', { 'argv.json': record('garbage-pid'), pid: 'twelve\n' });
    vm('no-pid', { 'argv.json': record('no-pid') });
    vm('no-record', { pid: `${sleeper.pid}\n` });
    vm('bad-record', { 'argv.json': 'not json\nat all', pid: `${sleeper.pid}` });
    vm('.hidden', { 'argv.json': record('hidden') });
    mkdirSync(path.join(dir, 'record-is-a-dir', 'argv.json'), { recursive: true });
    writeFileSync(path.join(dir, 'a-file'), 'not a VM directory');
  });
  afterAll(() => {
    sleeper.kill('SIGKILL');
    rmSync(dir, { recursive: true, force: true });
  });

  it('lists the same rows both ways', async () => {
    const byFiles = await runtimeRowsByFiles(local, dir);
    expect(byFiles).toEqual(await runtimeRowsByShell(local, dir));
    const fields = byFiles.map((r) => r.split('\t').slice(0, 3));
    expect(fields).toEqual([
      ['alive', String(sleeper.pid), 'S'],
      ['bad-record', String(sleeper.pid), 'S'],
      ['dead', String(deadPid), '-'],
      ['garbage-pid', '-', '-'],
      ['no-pid', '-', '-'],
    ]);
    // The record on one line, as written (its tab and ") " inside a JSON string kept).
    expect(JSON.parse(byFiles[0]!.split('\t').slice(3).join('\t'))).toMatchObject({ version: 1, name: 'alive', argv: expect.arrayContaining(['a\tb) c']) });
  });

  it('a runtime dir that does not exist yet has no VMs, both ways', async () => {
    const missing = path.join(dir, 'nope', 'deeper');
    expect(await runtimeRowsByFiles(local, missing)).toEqual([]);
    expect(await runtimeRowsByShell(local, missing)).toEqual([]);
  });
});
