/**
 * The demo guest's memory check across real TCG migrations.
 *
 * LAB-NOTES reports that QEMU 7.2's TCG loses guest writes during migration when RAM is a
 * multiple of 256 KiB (fixed upstream in 9.0). On this Debian build (7.2.22) we could not
 * reproduce it in 15+ runs across workloads, so the test does not depend on the bug: it
 * migrates a 512 MiB (aligned) guest and requires that the check either passes or names the
 * stale pages, and it carries a deliberately stale page through a real migration to prove
 * the check sees staleness on the destination (expected versions come from the register
 * state, which migrates atomically, not from RAM).
 */
import { afterEach, describe, expect, it } from 'vitest';
import { makeTestLab } from '../../../test/support/lab';
import type { TestLab } from '../../../test/support/lab';
import { LAB_DEFAULT_MEMORY_KIB } from '../lab/local-lab';

describe('guest memory check across TCG migrations', () => {
  let lab: TestLab | undefined;
  afterEach(async () => {
    await lab?.close();
    lab = undefined;
  });

  it('catches a stale page carried through a TCG migration of an aligned (512 MiB) guest', async () => {
    lab = await makeTestLab();
    await lab.up({ accel: 'tcg', memoryKiB: 512 * 1024, workload: { wsMiB: 32, rateMiBs: 0 } });
    const con = await lab.guest('lab-a');
    expect(await con.command('o 7')).toMatchObject({ kind: 'ok', command: 'o' });
    con.close();
    const m = await lab.service.engine.start({ vm: 'demo', from: 'lab-a', to: 'lab-b', maxBandwidth: 200_000_000 });
    const final = await m.whenDone();
    expect(final.outcome).toBe('completed');
    expect(final.verify).toMatchObject({ ok: false, stale: 1, bad: 0 });
  });

  it('a busy aligned guest under TCG: the check passes or names the lost writes', async () => {
    lab = await makeTestLab();
    await lab.up({ accel: 'tcg', memoryKiB: 512 * 1024, workload: { wsMiB: 64, rateMiBs: 80 } });
    const m = await lab.service.engine.start({ vm: 'demo', from: 'lab-a', to: 'lab-b', maxBandwidth: 100_000_000 });
    const final = await m.whenDone();
    expect(final.outcome).toBe('completed');
    expect(final.verify).toBeDefined();
    if (!final.verify!.ok) {
      console.log(`[tcg] QEMU lost guest writes: ${final.verify!.stale} stale, ${final.verify!.bad} bad pages — caught`);
      expect(final.verify!.stale + final.verify!.bad).toBeGreaterThan(0);
    } else {
      console.log('[tcg] aligned 512 MiB guest migrated intact (the 7.2 TCG dirty-bitmap bug did not strike)');
    }
  });

  it('the lab default size (524100 KiB) migrates clean under TCG', async () => {
    lab = await makeTestLab();
    await lab.up({ accel: 'tcg', memoryKiB: LAB_DEFAULT_MEMORY_KIB, workload: { wsMiB: 64, rateMiBs: 80 } });
    const m = await lab.service.engine.start({ vm: 'demo', from: 'lab-a', to: 'lab-b', maxBandwidth: 100_000_000 });
    const final = await m.whenDone();
    expect(final).toMatchObject({ outcome: 'completed', verify: { ok: true, bad: 0, stale: 0 } });
  });
});
