import { describe, expect, it } from 'vitest';
import { qemuPidsOfDomain } from './libvirt-domains';
import type { ExecResult, HostTransport } from '../transport/host-transport';

const UUID = '6a1e0d5c-3f8e-4c47-9b1f-2f1d6c0a9e11';

function host(pgrep: Partial<ExecResult>, cmdlines: Record<number, string[]>, seen: string[][] = []): HostTransport {
  return {
    label: 'hv1',
    exec: async (argv: readonly string[]) => {
      seen.push([...argv]);
      return { code: 0, signal: null, stdout: '', stderr: '', ...pgrep };
    },
    readFile: async (p: string) => {
      const pid = Number(/^\/proc\/(\d+)\/cmdline$/.exec(p)?.[1]);
      const argv = cmdlines[pid];
      if (!argv) throw new Error(`ENOENT: ${p}`);
      return Buffer.from(`${argv.join('\0')}\0`);
    },
  } as unknown as HostTransport;
}

describe('the QEMU of a libvirt domain', () => {
  it('is the process whose arguments carry -uuid UUID, not the shell that ran pgrep nor a candidate gone meanwhile', async () => {
    const seen: string[][] = [];
    const t = host({ stdout: '812\n901\n955\n' }, {
      812: ['/usr/bin/qemu-system-x86_64', '-name', 'guest=demo,debug-threads=on', '-uuid', UUID, '-m', '512'],
      901: ['sh', '-c', `pgrep -f -- '-uuid ${UUID}'`],
    }, seen);
    expect(await qemuPidsOfDomain(t, UUID)).toEqual([812]);
    expect(seen).toEqual([['pgrep', '-f', '--', `-uuid ${UUID}`]]);
    // Another domain's QEMU whose UUID merely starts the same is not this one.
    expect(await qemuPidsOfDomain(host({ stdout: '812\n' }, { 812: ['qemu', '-uuid', `${UUID}0`] }), UUID)).toEqual([]);
    expect(await qemuPidsOfDomain(host({ code: 1 }, {}), UUID)).toEqual([]);
  });

  it('a host without pgrep says so', async () => {
    expect(await qemuPidsOfDomain(host({ code: 127, stderr: 'sh: 1: pgrep: not found' }, {}), UUID)).toEqual({ unavailable: 'pgrep (procps) is not installed on hv1' });
  });
});
