import { spawn } from 'node:child_process';
import { setTimeout as sleep } from 'node:timers/promises';
import { describe, expect, it, vi } from 'vitest';
import { FerryException } from '../../../shared/errors';
import { rootLog } from '../log';
import { EventWatch } from './virsh-process';
import type { LibvirtConnection } from './libvirt-connection';

describe('EventWatch', () => {
  it('ends, saying why, when virsh went away and its connection was closed meanwhile (no uncaught error from the restart timer)', async () => {
    let spawns = 0;
    // One virsh that ends at once (a relay hiccup), then a connection closed, as LibvirtConnection.spawn throws it.
    const conn = {
      hostId: 'lab-x',
      relayConnections: 0,
      spawn: () => {
        if (spawns++ === 0) return spawn('sh', ['-c', 'echo "error: Disconnected from qemu:///system due to end of file"; exit 1']);
        throw new FerryException('TRANSPORT_CLOSED', 'the libvirt connection to lab-x is closed');
      },
    } as unknown as LibvirtConnection;
    const log = rootLog.child('test');
    const warn = vi.spyOn(log, 'warn');
    const watch = new EventWatch(conn, () => ['demo'], () => undefined, log);
    await watch.ready;
    // The restart comes 500 ms after the end; allow a busy machine ample time (the loop ends as soon as both are said).
    for (let i = 0; i < 500 && warn.mock.calls.length < 2; i++) await sleep(20);
    watch.stop();
    expect(spawns).toBe(2);
    expect(warn.mock.calls.map((c) => c[0])).toEqual([
      'lab-x: virsh event ended (exit 1): error: Disconnected from qemu:///system due to end of file',
      'lab-x: virsh event not restarted: the libvirt connection to lab-x is closed',
    ]);
  });
});
