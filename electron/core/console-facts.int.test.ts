import { afterAll, describe, expect, it, vi } from 'vitest';
import { accessSync, constants, mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { ConsoleService } from './console-service';
import { LocalTransport } from './transport/local-transport';
import type { HostInfo } from '../../shared/contract';

/** Whether this process may use /dev/kvm, asked here directly. */
function kvmUsable(): boolean {
  try {
    accessSync('/dev/kvm', constants.R_OK | constants.W_OK);
    return true;
  } catch {
    return false; // absent or not ours: TCG, the answer
  }
}

describe('host facts: what the board asks a host, and how often', () => {
  const configDir = mkdtempSync(path.join(tmpdir(), 'ferry-facts-'));
  const service = new ConsoleService({ configDir, builtinHosts: [{ id: 'lab-a', transport: { kind: 'local' }, runtimeDir: path.join(configDir, 'run') }] });
  afterAll(async () => {
    vi.restoreAllMocks();
    await service.dispose();
    rmSync(configDir, { recursive: true, force: true });
  });

  it('reads the software once a minute (QEMU\'s version and KVM in one process) and the memory every 10 s', async () => {
    const asked: string[] = [];
    const exec = LocalTransport.prototype.exec;
    vi.spyOn(LocalTransport.prototype, 'exec').mockImplementation(function (this: LocalTransport, argv, options) {
      asked.push(argv.join(' '));
      return exec.call(this, argv, options);
    });
    const reads: string[] = [];
    const readFile = LocalTransport.prototype.readFile;
    vi.spyOn(LocalTransport.prototype, 'readFile').mockImplementation(function (this: LocalTransport, p) {
      reads.push(p);
      return readFile.call(this, p);
    });
    let now = Date.now();
    vi.spyOn(Date, 'now').mockImplementation(() => now);
    const facts = async () => {
      const r = await service.invoke('hosts:list', {});
      if (!r.ok) throw new Error(r.error.message);
      return (r.value as HostInfo[])[0]!.facts!;
    };
    const versions = () => asked.filter((a) => / --version/.test(a)).length;
    const memory = () => reads.filter((p) => p === '/proc/meminfo').length;

    const first = await facts();
    expect(first.qemuVersion).toMatch(/^\d+\.\d+\.\d+$/);
    expect(first.memAvailableMiB).toBeGreaterThan(0);
    expect(versions()).toBe(1); // was 2: the version line and the probe each ran it
    expect(first.kvm).toBe(kvmUsable());
    // one process for the software: it was two (the version line, then `test -r /dev/kvm`)
    expect(asked).toHaveLength(1);
    expect(memory()).toBe(1);

    now += 5_000; // the board's next refresh: all from memory
    expect(await facts()).toEqual(first);
    expect([versions(), memory()]).toEqual([1, 1]);

    now += 6_000; // 11 s: the memory again, not the software
    const later = await facts();
    expect([versions(), memory()]).toEqual([1, 2]);
    expect(later.qemuVersion).toBe(first.qemuVersion);
    expect(later.kvm).toBe(first.kvm);

    now += 50_000; // 61 s: everything again
    await facts();
    expect([versions(), memory()]).toEqual([2, 3]);
    expect(asked).toHaveLength(2);
  });
});
