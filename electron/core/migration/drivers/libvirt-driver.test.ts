import { describe, expect, it } from 'vitest';
import type { VirshExit } from '../../libvirt/virsh-process';
import { startResume } from './libvirt-driver';

const STILL_RUNNING = 'Requested operation is not valid: QEMU reports migration is still running';
/** A virsh that libvirt refuses at once with `reason`, or (no reason) one that it takes and keeps running. */
const attempt = (reason?: string) => ({
  exited: reason ? Promise.resolve<VirshExit>({ code: 1, signal: null, output: `error: ${reason}\n`, errors: [reason], reason }) : new Promise<VirshExit>(() => undefined),
});
const fast = { waitMs: 2000, takenAfterMs: 50, retryMs: 10 };

describe('starting a postcopy resume (startResume)', () => {
  it('tries again while libvirt says QEMU has not paused yet, and returns the attempt it took', async () => {
    const made: ReturnType<typeof attempt>[] = [];
    const heard: string[] = [];
    const plan = [STILL_RUNNING, STILL_RUNNING, undefined];
    const taken = await startResume(() => {
      const a = attempt(plan[made.length]);
      made.push(a);
      return a;
    }, (r) => heard.push(r), fast);
    expect(made).toHaveLength(3);
    expect(taken).toBe(made[2]);
    expect(heard).toEqual([STILL_RUNNING]); // said once, not per attempt
  });

  it('a resume that ends well at once is taken too', async () => {
    const done = { exited: Promise.resolve<VirshExit>({ code: 0, signal: null, output: '', errors: [] }) };
    expect(await startResume(() => done, () => undefined, fast)).toBe(done);
  });

  it('any other refusal is final at once, with libvirt\'s words', async () => {
    let n = 0;
    const other = "Requested operation is not valid: migration of domain demo is not in post-copy phase";
    await expect(startResume(() => (n++, attempt(other)), () => undefined, fast)).rejects.toThrow(other);
    expect(n).toBe(1);
  });

  it('gives up when QEMU never pauses within the wait, naming why', async () => {
    let n = 0;
    await expect(startResume(() => (n++, attempt(STILL_RUNNING)), () => undefined, { ...fast, waitMs: 200 })).rejects.toThrow(STILL_RUNNING);
    expect(n).toBeGreaterThan(2);
  });
});
