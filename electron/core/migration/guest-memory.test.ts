import { describe, expect, it } from 'vitest';
import { guestRamResident, touchedGuestBytes } from './guest-memory';
import type { HostTransport } from '../transport/host-transport';

const block = (head: string, sizeKiB: number, rssKiB: number) => `${head}\nSize:             ${sizeKiB} kB\nKernelPageSize:        4 kB\nRss:               ${rssKiB} kB\nPss:               ${rssKiB} kB\nVmFlags: rd wr mr mw me ac \n`;
// Excerpts of a QEMU 7.2's smaps (-m 524100k): its binary, its heap, and the guest's RAM.
const SMAPS = [
  block('55a6b399d000-55a6b3f34000 r-xp 00407000 fe:00 2170907                    /usr/bin/qemu-system-x86_64', 5724, 4708),
  block('55a6b5e47000-55a6b6a2c000 rw-p 00000000 00:00 0                          [heap]', 12180, 11020),
  block('7f1950000000-7f196ffd2000 rw-p 00000000 00:00 0 ', 524104, 67584),
].join('');

describe('touched guest memory', () => {
  it('is the resident part of the guest RAM mapping', () => {
    expect(guestRamResident(SMAPS, 524100)).toBe(67584 * 1024);
    expect(guestRamResident(SMAPS, 2 * 524100)).toBeUndefined();
    expect(guestRamResident('', 524100)).toBeUndefined();
  });

  it('falls back to the resident size less QEMU\u2019s footprint when smaps gives no answer', async () => {
    const t = { label: 'hv1', readFile: async (p: string) => Buffer.from(p.endsWith('smaps') ? '' : 'VmRSS:\t  88368 kB\n') } as unknown as HostTransport;
    expect(await touchedGuestBytes(t, 1, 512)).toBe(88368 * 1024 - (40 << 20));
    const s = { label: 'hv1', readFile: async () => Buffer.from(SMAPS) } as unknown as HostTransport;
    expect(await touchedGuestBytes(s, 1, 524100 / 1024)).toBe(67584 * 1024);
  });
});
