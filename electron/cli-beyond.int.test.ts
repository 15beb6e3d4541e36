/**
 * The CLI of issue 9 on a throwaway lab: migrate --copy-storage, save / states / restore,
 * and the usage errors. Real QEMU; the lab root and config dir are temp dirs.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { mkdtempSync, rmSync } from 'node:fs';
import { Writable } from 'node:stream';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { main } from './cli';
import { labDown, labUp } from './core/lab/local-lab';
import { processesMentioning } from '../test/support/lab';
import { killPid } from '../test/support/processes';

function sink(): Writable & { text: string } {
  const w = new Writable({
    write(chunk: Buffer, _enc, cb) {
      w.text += chunk.toString();
      cb();
    },
  }) as Writable & { text: string };
  w.text = '';
  return w;
}

async function ferry(...argv: string[]): Promise<{ code: number; out: string; err: string }> {
  const out = sink();
  const err = sink();
  const code = await main(argv, out, err);
  return { code, out: out.text, err: err.text };
}

describe('ferry CLI: --copy-storage, save, states, restore (real QEMU)', () => {
  const root = mkdtempSync(path.join(tmpdir(), 'ferry-clilab-'));
  const config = mkdtempSync(path.join(tmpdir(), 'ferry-clicfg-'));
  const saved = { lab: process.env.FERRY_LAB_DIR, xdg: process.env.XDG_CONFIG_HOME };

  beforeAll(async () => {
    process.env.FERRY_LAB_DIR = root;
    process.env.XDG_CONFIG_HOME = config;
    await labUp({ root, dataDiskMiB: 16, workload: { wsMiB: 16, rateMiBs: 10 } });
  });
  afterAll(async () => {
    await labDown({ root }).catch(() => undefined);
    for (const pid of processesMentioning(root)) await killPid(pid);
    rmSync(root, { recursive: true, force: true });
    rmSync(config, { recursive: true, force: true });
    for (const [k, v] of [['FERRY_LAB_DIR', saved.lab], ['XDG_CONFIG_HOME', saved.xdg]] as const) {
      if (v === undefined) delete process.env[k];
      else process.env[k] = v;
    }
  });

  it('migrates with the disk copied, then parks the VM in a file and brings it back', async () => {
    const pre = await ferry('preflight', 'demo', '--from', 'lab-a', '--to', 'lab-b', '--copy-storage');
    expect(pre.out).toMatch(/PASS {2}Storage copy: 1 disk\(s\)/);
    const mig = await ferry('migrate', 'demo', '--from', 'lab-a', '--to', 'lab-b', '--copy-storage', '--storage-bandwidth', '50');
    expect(mig.err).toBe('');
    expect(mig.code).toBe(0);
    // The copy's last line, written as the phase ends (the copy takes under a second: the
    // once-a-second log line alone could show only its start, "0 B / 16.8 MB").
    expect(mig.out).toMatch(/^storage-copy +[\d.]+ MB \/ [\d.]+ MB.*\nphase setup$/m);
    expect(mig.out).toMatch(/completed.*guest memory verified; disks copied/);

    const save = await ferry('save', 'lab-b', 'demo', 'parked.state', '--compress', 'zstd');
    expect(save).toMatchObject({ code: 0, err: '' });
    expect(save.out).toMatch(/saved demo on lab-b to .*lab-b-states\/parked\.state: .* zstd.*VM stopped/);
    const list = await ferry('states', 'lab-b');
    expect(list.out).toMatch(/parked\.state\tdemo\t.*\tzstd\n/);
    const restore = await ferry('restore', 'lab-b', 'parked.state');
    expect(restore).toMatchObject({ code: 0, err: '' });
    expect(restore.out).toMatch(/restored demo on lab-b .*VM running/);
    const v = await ferry('guest', 'lab-b', 'demo', 'v');
    expect(v.out).toMatch(/VERIFY result=ok/);
  });

  it('names bad options and refuses a wrong tunnel', async () => {
    const bad = await ferry('save', 'lab-b', 'demo', 'x.state', '--compress', 'xz');
    expect(bad.code).toBe(2);
    expect(bad.err).toMatch(/--compress must be zstd, gzip or none/);
    const tunnel = await ferry('migrate', 'demo', '--from', 'lab-b', '--to', 'lab-a', '--tunnel', 'tcp');
    expect(tunnel.code).toBe(2);
    expect(tunnel.err).toMatch(/--tunnel takes one value: ssh/);
    const elsewhere = await ferry('vm', 'list', 'lab-a', '--copy-storage');
    expect(elsewhere.code).toBe(2);
    expect(elsewhere.err).toMatch(/--copy-storage only applies to migrate and preflight/);
    const cap = await ferry('migrate', 'demo', '--from', 'lab-b', '--to', 'lab-a', '--storage-bandwidth', '10');
    expect(cap.err).toMatch(/--storage-bandwidth only applies with --copy-storage/);
    const missing = await ferry('restore', 'lab-b', 'nothing.state');
    expect(missing.code).toBe(1);
    expect(missing.err).toMatch(/no saved state .*nothing\.state on lab-b \[NOT_FOUND\]/);
  });
});
