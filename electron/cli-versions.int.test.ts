/**
 * The host-upgrade path by the CLI: `ferry lab up --qemu-b PATH` puts lab-b on QEMU 10.0,
 * `hosts list --json` shows each host's QEMU, a 7.2 → 10.0 live migration completes with the
 * guest's memory verified, and the way back (10.0 → 7.2) is refused by preflight naming both
 * versions. Then the trainer's demo compares auto-converge with dirty-limit (KVM only).
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { mkdtempSync, rmSync } from 'node:fs';
import { Writable } from 'node:stream';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { main } from './cli';
import { DIRTY_LIMIT_RING, labDown } from './core/lab/local-lab';
import { processesMentioning } from '../test/support/lab';
import { killPid } from '../test/support/processes';
import { needQemu10, qemu10 } from '../test/support/qemu-versions';
import { kvmUsable } from '../test/support/qemu';
import { readTimeline } from './core/recorder/timeline-reader';

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

const skip = needQemu10();

describe.skipIf(skip !== undefined)('ferry CLI across QEMU versions (real QEMU 7.2 and 10.0)', () => {
  const root = mkdtempSync(path.join(tmpdir(), 'ferry-cliqemu-'));
  const config = mkdtempSync(path.join(tmpdir(), 'ferry-cliqemucfg-'));
  const saved = { lab: process.env.FERRY_LAB_DIR, xdg: process.env.XDG_CONFIG_HOME };
  const q = qemu10();

  beforeAll(() => {
    process.env.FERRY_LAB_DIR = root;
    process.env.XDG_CONFIG_HOME = config;
  });
  afterAll(async () => {
    await labDown({ root }).catch(() => undefined); // cleanup after the test: its own failure is what matters
    for (const pid of processesMentioning(root)) await killPid(pid);
    rmSync(root, { recursive: true, force: true });
    rmSync(config, { recursive: true, force: true });
    for (const [k, v] of [['FERRY_LAB_DIR', saved.lab], ['XDG_CONFIG_HOME', saved.xdg]] as const) {
      if (v === undefined) delete process.env[k];
      else process.env[k] = v;
    }
  });

  it('lab up --qemu-b, hosts list shows both QEMUs, 7.2 → 10.0 migrates with memory verified, 10.0 → 7.2 is refused', async () => {
    if (!q.ok) return;
    const up = await ferry('lab', 'up', '--qemu-b', q.install.binary, ...(kvmUsable() ? ['--dirty-ring', String(DIRTY_LIMIT_RING)] : []));
    expect(up.code).toBe(0);
    expect(up.out).toMatch(/started demo on lab-a \((kvm|tcg), QEMU 7\.2\.\d+, machine pc-i440fx-7\.2,/);
    expect(up.out).toContain(`QEMU ${q.install.binary}`);

    const hosts = await ferry('hosts', 'list', '--json');
    expect(hosts.code).toBe(0);
    const list = JSON.parse(hosts.out) as { config: { id: string }; facts?: { qemuVersion?: string; qemuFeatures?: string[] } }[];
    const facts = (id: string) => list.find((h) => h.config.id === id)?.facts;
    expect(facts('lab-a')?.qemuVersion).toMatch(/^7\.2\.\d+$/);
    expect(facts('lab-b')?.qemuVersion).toBe(q.version);
    expect(facts('lab-a')?.qemuFeatures).not.toContain('dirty-limit');
    expect(facts('lab-b')?.qemuFeatures).toEqual(expect.arrayContaining(['dirty-limit', 'switchover-ack', 'avail-switchover-bandwidth', 'mapped-ram']));
    expect((await ferry('hosts', 'list')).out).toMatch(new RegExp(`lab-b\\t.*QEMU ${q.version.replace(/\./g, '\\.')}`));

    const pf = await ferry('preflight', 'demo', '--from', 'lab-a', '--to', 'lab-b');
    expect(pf.out).toMatch(/PASS {2}QEMU versions: QEMU 7\.2\.\d+ on lab-a -> QEMU 10\.0\.\d+ on lab-b: an upgrade/);
    expect(pf.out).toMatch(/PASS {2}Machine type on the destination: pc-i440fx-7\.2 available in QEMU 10\.0/);
    expect(pf.code).toBe(0);

    const record = path.join(root, 'up.ferry.jsonl');
    const mig = await ferry('migrate', 'demo', '--from', 'lab-a', '--to', 'lab-b', '--bandwidth', '100', '--record', record);
    expect(mig.err).toBe('');
    expect(mig.code).toBe(0);
    expect(mig.out).toMatch(/completed; total .*guest memory verified/);
    const t = readTimeline(record);
    expect([t.header?.source.qemuVersion, t.header?.destination?.qemuVersion]).toEqual([expect.stringMatching(/^7\.2\./), q.version]);

    // Now on 10.0: back to 7.2 is refused, naming both versions.
    const back = await ferry('preflight', 'demo', '--from', 'lab-b', '--to', 'lab-a');
    expect(back.code).toBe(1);
    expect(back.out).toMatch(new RegExp(`FAIL  QEMU versions: lab-a runs QEMU 7\\.2\\.\\d+, older than QEMU ${q.version.replace(/\./g, '\\.')} on lab-b`));
    const refused = await ferry('migrate', 'demo', '--from', 'lab-b', '--to', 'lab-a');
    expect(refused.code).toBe(1);
    expect(refused.err).toMatch(/refused: lab-a runs QEMU 7\.2\.\d+, older than the source's QEMU 10\.0\.\d+ on lab-b/);
  });

  it.skipIf(!kvmUsable())('lab demo --compare converge: the upgrade hop first, then auto-converge and dirty-limit 10.0 → 10.0, overlaid', async () => {
    if (!q.ok) return;
    // The VM is on lab-b (10.0) after the test above; bring it back to a fresh lab on 7.2 for the whole story.
    await ferry('lab', 'down');
    expect((await ferry('lab', 'up', '--qemu-b', q.install.binary, '--dirty-ring', String(DIRTY_LIMIT_RING))).code).toBe(0);
    const out = path.join(root, 'converge.html');
    const demo = await ferry('lab', 'demo', '--compare', 'converge', '-o', out);
    expect(demo.err).toBe('');
    expect(demo.code).toBe(0);
    expect(demo.out).toMatch(/upgrade hop: lab-a runs QEMU 7\.2\.\d+ \(no dirty-limit\)/);
    expect(demo.out).toMatch(/lab-a now runs the same QEMU as lab-b/);
    expect(demo.out).toMatch(/auto-converge and dirty-limit completed; comparison: /);
    const html = (await import('node:fs')).readFileSync(out, 'utf8');
    expect(html).toContain('dirty-limit: vCPU throttle time per round');
    expect(html).toContain('CPU throttle (auto-converge)');
    console.log(`[cli] ${demo.out.split('\n').filter((l) => /^(auto-converge|dirty-limit|upgrade)/.test(l)).join(' | ')}`);
  }, 240_000); // three migrations, auto-converge the slowest: ~25 s alone, far more on a busy machine
});
