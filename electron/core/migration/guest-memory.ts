/**
 * How much of the guest's RAM the source QEMU has touched: pages never touched are zero
 * pages, which cost a scan in the bulk pass, not the link, and bound the dirty set. Read
 * from the guest RAM mapping in `/proc/PID/smaps` (the anonymous mapping the size of the
 * guest's memory: its resident size is exactly the touched part); where that cannot be
 * read, from the process's resident size less QEMU's own footprint (a rougher figure).
 */
import type { HostTransport } from '../transport/host-transport';
import { rootLog } from '../log';

const log = rootLog.child('engine');

/** Resident bytes of the anonymous mappings at least `memKiB` × 0.98 long (the guest's RAM blocks), or undefined when there is none. */
export function guestRamResident(smaps: string, memKiB: number): number | undefined {
  let size = 0;
  let anon = false;
  let total: number | undefined;
  for (const line of smaps.split('\n')) {
    const head = /^[0-9a-f]+-[0-9a-f]+\s+\S+\s+\S+\s+(\S+)\s+(\d+)\s*(.*)$/.exec(line);
    if (head) {
      // Anonymous: inode 0 and no path (or QEMU's memfd/anon names).
      anon = head[2] === '0' && (head[3] === '' || /^\[anon|^\/memfd:|\(deleted\)$/.test(head[3]!));
      size = 0;
      continue;
    }
    const sz = /^Size:\s+(\d+) kB/.exec(line);
    if (sz) size = Number(sz[1]);
    const rss = /^Rss:\s+(\d+) kB/.exec(line);
    if (rss && anon && size >= 0.98 * memKiB) total = (total ?? 0) + Number(rss[1]) * 1024;
  }
  return total;
}

/** QEMU's own footprint (binary, heap, TCG or KVM structures) when only the whole resident size is known. */
const QEMU_FOOTPRINT = 40 << 20;

export async function touchedGuestBytes(transport: HostTransport, pid: number, memMiB: number | undefined): Promise<number | undefined> {
  if (memMiB !== undefined) {
    const smaps = await transport.readFile(`/proc/${pid}/smaps`).then((b) => b.toString(), (e: unknown) => {
      log.debug(`${transport.label}: /proc/${pid}/smaps not read: ${e instanceof Error ? e.message : String(e)}`);
      return '';
    });
    const v = guestRamResident(smaps, memMiB * 1024);
    if (v !== undefined) return v;
  }
  const status = await transport.readFile(`/proc/${pid}/status`).then((b) => b.toString()).catch(log.dropped(`reading /proc/${pid}/status on ${transport.label}`, 'debug'));
  const rssKiB = Number(/VmRSS:\s+(\d+)/.exec(status ?? '')?.[1] ?? NaN);
  return Number.isFinite(rssKiB) ? Math.max(16 << 20, rssKiB * 1024 - QEMU_FOOTPRINT) : undefined;
}
