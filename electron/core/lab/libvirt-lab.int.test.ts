import { existsSync, mkdtempSync, readFileSync, readdirSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { main } from '../../cli';
import { labHosts, readLabState, transportFor } from './local-lab';
import { LibvirtConnection } from '../libvirt/libvirt-connection';
import { listLibvirtVms, requireDomain, serialSocketOf } from '../libvirt/libvirt-domains';
import { GuestConsole } from './demo-guest';
import { libvirtLabMissing } from '../../../test/support/libvirt-lab';
import { processesMentioning } from '../../../test/support/lab';
import { isAlive, killPid } from '../../../test/support/processes';

const missing = await libvirtLabMissing();

function capture() {
  let text = '';
  return { stream: { write: (c: string) => ((text += c), true) } as unknown as NodeJS.WritableStream, text: () => text };
}

describe.skipIf(missing !== undefined)(`ferry lab up --libvirt${missing ? ` (skipped: ${missing})` : ''}`, () => {
  const root = mkdtempSync(path.join(tmpdir(), 'ferry-lvlab-cli-'));
  const saved = process.env.FERRY_LAB_DIR;
  const systemSocket = existsSync('/run/libvirt/libvirt-sock');

  beforeAll(() => {
    process.env.FERRY_LAB_DIR = root;
  });
  afterAll(async () => {
    for (const pid of processesMentioning(root)) await killPid(pid);
    rmSync(root, { recursive: true, force: true });
    if (saved === undefined) delete process.env.FERRY_LAB_DIR;
    else process.env.FERRY_LAB_DIR = saved;
  });

  it('starts two daemons with their own host UUIDs and the demo domain on lab-a; lab down removes all of it', async () => {
    const out = capture();
    const err = capture();
    const code = await main(['lab', 'up', '--libvirt'], out.stream, err.stream);
    expect(err.text()).toBe('');
    expect(code).toBe(0);
    expect(out.text()).toMatch(/started two libvirt daemons and the domain demo on lab-a \((kvm|qemu), uuid [0-9a-f-]{36}\)/);
    const state = readLabState(root)!.libvirt!;
    expect(state.daemons.map((d) => d.hostId)).toEqual(['lab-a', 'lab-b']);
    expect(state.daemons[0]!.hostUuid).not.toBe(state.daemons[1]!.hostUuid);
    const pids = state.daemons.map((d) => Number(readFileSync(d.pidFile, 'utf8')));
    for (const pid of pids) expect(isAlive(pid)).toBe(true);

    // Each host, as Ferry reaches it (its mount namespace), is its own libvirt with its own host UUID.
    const hosts = labHosts(root);
    expect(hosts.map((h) => h.libvirt?.socket)).toEqual(['/run/libvirt/libvirt-sock', '/run/libvirt/libvirt-sock']);
    const conns = await Promise.all(hosts.map((h) => LibvirtConnection.open(h, transportFor(h))));
    try {
      for (const [i, c] of conns.entries()) {
        const caps = await c.run(['capabilities']);
        expect(caps).toContain(`<uuid>${state.daemons[i]!.hostUuid}</uuid>`);
      }
      const [a = [], b = []] = await Promise.all(conns.map((c, i) => listLibvirtVms(hosts[i]!.id, c)));
      expect(a).toEqual([expect.objectContaining({ name: 'demo', runState: 'running', manager: 'libvirt', managed: true, libvirt: expect.objectContaining({ persistent: true, state: 'running' }) })]);
      expect(a[0]!.memoryMiB).toBeGreaterThan(500);
      expect(b).toEqual([]);
      // The demo guest answers on its serial console, reached inside lab-a's namespace.
      const d = await requireDomain(conns[0]!, 'demo');
      const sock = await serialSocketOf(conns[0]!, d.uuid);
      expect(sock).toMatch(/^\/run\/libvirt\/qemu\//);
      const con = await GuestConsole.open(transportFor(hosts[0]!), sock!);
      const reply = await con.command('s', 10_000);
      con.close();
      expect(reply.kind).toBe('status');
    } finally {
      for (const c of conns) await c.close();
    }
    // The system's own libvirt paths are left alone: the daemons live in their namespaces.
    expect(existsSync('/run/libvirt/libvirt-sock')).toBe(systemSocket);

    const status = capture();
    expect(await main(['lab', 'status'], status.stream, capture().stream)).toBe(0);
    expect(status.text()).toMatch(/libvirt: lab-a up, host uuid [0-9a-f-]{36}; lab-b up/);
    expect(status.text()).toMatch(/\n {2}demo\trunning/);

    const down = capture();
    expect(await main(['lab', 'down'], down.stream, capture().stream)).toBe(0);
    expect(down.text()).toContain('lab-a/demo');
    for (const pid of pids) expect(isAlive(pid)).toBe(false);
    expect(processesMentioning(root)).toEqual([]);
    expect(existsSync(root)).toBe(false);
  });

  it('lab down stops the domain\'s QEMU by pid when its daemon cannot be asked to (its socket gone)', async () => {
    expect(await main(['lab', 'up', '--libvirt'], capture().stream, capture().stream)).toBe(0);
    const a = readLabState(root)!.libvirt!.daemons[0]!;
    const pidFiles = readdirSync(path.join(a.dir, 'run', 'qemu')).filter((f) => f.endsWith('.pid'));
    const qemu = Number(readFileSync(path.join(a.dir, 'run', 'qemu', pidFiles[0]!), 'utf8'));
    expect(isAlive(qemu)).toBe(true);
    rmSync(path.join(a.dir, 'run', 'libvirt-sock'));
    expect(await main(['lab', 'down'], capture().stream, capture().stream)).toBe(0);
    expect(isAlive(qemu)).toBe(false);
    expect(processesMentioning(root)).toEqual([]);
  });

  it('refuses --libvirt with --netns, in one line', async () => {
    const err = capture();
    expect(await main(['lab', 'up', '--libvirt', '--netns'], capture().stream, err.stream)).toBe(2);
    expect(err.text().split('\n')[0]).toBe('ferry: lab up: --libvirt and --netns do not go together');
  });
});
