import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { QmpClient } from './qmp-client';
import { QmpDisconnectedError, QmpExecuteError } from './qmp-errors';
import { LocalTransport } from '../transport/local-transport';
import { startTestVm } from '../../../test/support/qemu';
import type { TestVm } from '../../../test/support/qemu';
import { isAlive } from '../../../test/support/processes';

describe('QmpClient against a real QEMU (unix socket)', () => {
  let vm: TestVm;
  let qmp: QmpClient | undefined;
  const transport = new LocalTransport();

  beforeEach(async () => {
    vm = await startTestVm();
  });
  afterEach(async () => {
    qmp?.close();
    qmp = undefined;
    await vm.stop();
    expect(isAlive(vm.pid)).toBe(false);
  });

  it('negotiates and answers query-status, query-migrate and query-qmp-schema', async () => {
    qmp = await QmpClient.connect(await transport.openUnix(vm.qmpPath));
    expect(qmp.greeting.version?.qemu.major).toBeGreaterThanOrEqual(7);
    expect(qmp.oob).toBe(qmp.greeting.capabilities.includes('oob'));
    const status = await qmp.execute<{ status: string; running: boolean }>('query-status');
    expect(status).toMatchObject({ status: 'prelaunch', running: false });
    const mig = await qmp.execute<Record<string, unknown>>('query-migrate');
    expect(mig).not.toHaveProperty('status'); // no migration has run yet
    const schema = await qmp.execute<{ name: string; 'meta-type': string }[]>('query-qmp-schema');
    expect(schema.length).toBeGreaterThan(100);
    expect(schema.some((e) => e['meta-type'] === 'command')).toBe(true);
  });

  it('produces RESUME and STOP events for cont and stop, with waiters registered first', async () => {
    qmp = await QmpClient.connect(await transport.openUnix(vm.qmpPath));
    const resume = qmp.waitForEvent('RESUME', { timeoutMs: 5000 });
    await qmp.execute('cont');
    expect((await resume).event).toBe('RESUME');
    const stop = qmp.waitForEvent('STOP', { timeoutMs: 5000 });
    await qmp.execute('stop');
    const ev = await stop;
    expect(Math.abs(ev.timeMs - Date.now())).toBeLessThan(5000);
    expect(await qmp.execute('query-status')).toMatchObject({ status: 'paused' });
  });

  it('gives QmpExecuteError with class CommandNotFound for an unknown command', async () => {
    qmp = await QmpClient.connect(await transport.openUnix(vm.qmpPath));
    const e = await qmp.execute('ferry-no-such-command').catch((x: unknown) => x);
    expect(e).toBeInstanceOf(QmpExecuteError);
    expect((e as QmpExecuteError).errorClass).toBe('CommandNotFound');
    // the session is still usable
    await expect(qmp.execute('query-status')).resolves.toMatchObject({ running: false });
  });

  it('runs a command out-of-band when oob was negotiated', async () => {
    qmp = await QmpClient.connect(await transport.openUnix(vm.qmpPath));
    expect(qmp.oob).toBe(true); // QEMU 7.2 offers oob on a unix-socket monitor
    // migrate-pause exists in 7.2 and allows oob; with no migration it fails with GenericError.
    const e = await qmp.executeOob('migrate-pause').catch((x: unknown) => x);
    expect(e).toBeInstanceOf(QmpExecuteError);
    expect((e as QmpExecuteError).errorClass).toBe('GenericError');
  });

  it('rejects pending calls with QmpDisconnectedError when QEMU is killed', async () => {
    qmp = await QmpClient.connect(await transport.openUnix(vm.qmpPath));
    // Freeze QEMU so the call is certainly in flight, then kill it.
    process.kill(vm.pid, 'SIGSTOP');
    const pending = qmp.execute('query-status', undefined, { timeoutMs: 0 });
    const settled = pending.catch((x: unknown) => x);
    await new Promise((r) => setTimeout(r, 50));
    process.kill(vm.pid, 'SIGKILL');
    expect(await settled).toBeInstanceOf(QmpDisconnectedError);
    await expect(qmp.execute('query-status')).rejects.toBeInstanceOf(QmpDisconnectedError);
  });

  it('rejects a call that is pending at the moment QEMU dies', async () => {
    qmp = await QmpClient.connect(await transport.openUnix(vm.qmpPath));
    // A waiter that QEMU will never satisfy stands in for an in-flight call at kill time.
    const waiter = qmp.waitForEvent('SHUTDOWN', { timeoutMs: 0 });
    process.kill(vm.pid, 'SIGKILL');
    await expect(waiter).rejects.toBeInstanceOf(QmpDisconnectedError);
  });
});
