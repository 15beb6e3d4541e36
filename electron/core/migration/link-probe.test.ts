import { describe, expect, it } from 'vitest';
import { LinkProbe, linkRateOf, parseSsTcpInfo } from './link-probe';
import type { ExecResult, HostTransport } from '../transport/host-transport';

// `ss -tinH state established dst 127.0.0.1:45872` during a transfer, as iproute2 6.1 prints it.
const SS = `0      73728  127.0.0.1:55754 127.0.0.1:45872
\t bbr wscale:10,10 rto:204 rtt:0.054/0.035 mss:65483 pmtu:65535 rcvmss:536 advmss:65483 cwnd:10 ssthresh:8 bytes_sent:74776523 bytes_acked:74702849 segs_out:3220 segs_in:2536 data_segs_out:3218 bbr:(bw:30815527568bps,mrtt:0.004,pacing_gain:1.25,cwnd_gain:2) send 97011851852bps lastrcv:172 pacing_rate 43218769688bps delivery_rate 29103555552bps delivered:3217 app_limited busy:160ms unacked:2 reordering:5 rcv_space:65495 rcv_ssthresh:65495 notsent:53 minrtt:0.004 snd_wnd:876544
`;

describe('the migration connection speed from TCP_INFO', () => {
  it('reads bytes acked and busy time per connection', () => {
    expect(parseSsTcpInfo(SS)).toEqual([{ peer: '127.0.0.1:55754 -> 127.0.0.1:45872', bytesAcked: 74702849, busyMs: 160 }]);
    expect(parseSsTcpInfo('')).toEqual([]);
    // A connection without the figures (an old kernel) is left out.
    expect(parseSsTcpInfo('0 0 10.0.0.1:1 10.0.0.2:2\n\t cubic rtt:0.1/0.05\n')).toEqual([]);
  });

  it('bytes acked over busy time; several connections (multifd) add up over the busiest one', () => {
    expect(linkRateOf(parseSsTcpInfo(SS))).toBeCloseTo((74702849 * 1000) / 160, 0);
    expect(linkRateOf([{ peer: 'a', bytesAcked: 40e6, busyMs: 400 }, { peer: 'b', bytesAcked: 40e6, busyMs: 380 }])).toBeCloseTo(200e6, 0);
    // Too little to read a rate from: ss rounds busy time to whole ms.
    expect(linkRateOf([{ peer: 'a', bytesAcked: 8e6, busyMs: 4 }])).toBeUndefined();
    expect(linkRateOf([{ peer: 'a', bytesAcked: 1e6, busyMs: 400 }])).toBeUndefined();
    expect(linkRateOf([])).toBeUndefined();
  });

  const fake = (results: Partial<ExecResult>[], seen: string[][] = []) => ({
    label: 'hv1', kind: 'ssh',
    exec: async (argv: readonly string[]) => {
      seen.push([...argv]);
      return { code: 0, signal: null, stdout: '', stderr: '', ...results.shift() };
    },
  }) as unknown as HostTransport;

  it('asks ss on the source for its connection to the destination (IPv6 in brackets), at most once per interval', async () => {
    const seen: string[][] = [];
    const probe = new LinkProbe(fake([{ stdout: SS }, { stdout: SS }], seen), { address: 'fd00::2', port: 4444 }, 500, undefined, 500);
    expect(await probe.read()).toBeCloseTo((74702849 * 1000) / 160, 0);
    expect(seen[0]).toEqual(['ss', '-tinH', 'state', 'established', 'dst', '[fd00::2]:4444']);
    probe.poll(1000);
    probe.poll(1200);
    await new Promise((r) => setTimeout(r, 10));
    expect(seen).toHaveLength(2);
  });

  it('backs off while the connection has sent too little for a figure (each read is a process on the source host)', async () => {
    const seen: string[][] = [];
    const probe = new LinkProbe(fake(Array.from({ length: 10 }, () => ({ stdout: '' })), seen), { address: '10.0.0.2', port: 1 }, 500, undefined, 2000);
    const settle = () => new Promise((r) => setTimeout(r, 5));
    // Reads at 0.5, 1.5 (+1 s), 3.5 (+2 s), 5.5 (+2 s: capped) — not every 500 ms.
    for (let t = 500; t <= 6000; t += 100) {
      probe.poll(t);
      await settle();
    }
    expect(seen).toHaveLength(4);
  });

  // `ss -tinpH state established dst 127.0.0.3` as root on a libvirt source: the migration
  // stream (the source QEMU's), and a virsh client's connection to the destination's daemon.
  const SSP = `0      0      127.0.0.2:41112 127.0.0.3:49152 users:(("qemu-system-x86",pid=9700,fd=18))
\t bbr wscale:10,10 rto:204 rtt:0.144/0.172 mss:65483 bytes_sent:18415739 bytes_acked:18022789 busy:92ms rwnd_limited:88ms(95.7%) minrtt:0.004
0      0      127.0.0.2:53000 127.0.0.3:16509 users:(("virsh",pid=811,fd=3),("virsh",pid=812,fd=3))
\t cubic rtt:0.05/0.02 bytes_sent:91234 bytes_acked:91234 busy:40ms
`;

  it('reads which processes own each connection (ss -p)', () => {
    expect(parseSsTcpInfo(SSP)).toEqual([
      { peer: '127.0.0.2:41112 -> 127.0.0.3:49152', bytesAcked: 18022789, busyMs: 92, pids: [9700] },
      { peer: '127.0.0.2:53000 -> 127.0.0.3:16509', bytesAcked: 91234, busyMs: 40, pids: [811, 812] },
    ]);
    // Details on the socket's own line (ss not wrapping): the addresses are still the two before them.
    expect(parseSsTcpInfo('0 0 10.0.0.1:5 10.0.0.2:6 users:(("qemu",pid=7,fd=9)) cubic rto:204 bytes_acked:3000000 busy:10ms\n')).toEqual([{ peer: '10.0.0.1:5 -> 10.0.0.2:6', bytesAcked: 3000000, busyMs: 10, pids: [7] }]);
    expect(parseSsTcpInfo('0 0 10.0.0.1:5 10.0.0.2:6 cubic rto:204 bytes_acked:3000000 busy:10ms\n')).toEqual([{ peer: '10.0.0.1:5 -> 10.0.0.2:6', bytesAcked: 3000000, busyMs: 10 }]);
  });

  it('the port unknown (libvirt chose it), reads the connections to the destination the source QEMU owns', async () => {
    const seen: string[][] = [];
    let asked = 0;
    const owner = async () => (++asked === 1 ? [] : [9700, 9650]);
    const probe = new LinkProbe(fake([{ stdout: SSP }], seen), { address: '127.0.0.3', owner }, 0);
    // No QEMU found yet: no ss run, no figure.
    expect(await probe.read()).toBeUndefined();
    expect(seen).toEqual([]);
    expect(await probe.read()).toBeCloseTo((18022789 * 1000) / 92, 0);
    expect(seen).toEqual([['ss', '-tinpH', 'state', 'established', 'dst', '127.0.0.3']]);
    expect(asked).toBe(2);
  });

  it('the port unknown and ss names no owners (not root), or no pgrep: says why once and stops', async () => {
    const notes: string[] = [];
    const noOwners = SSP.replace(/ users:\(\(.*\)\)/g, '');
    const probe = new LinkProbe(fake([{ stdout: noOwners }, { stdout: SSP }]), { address: 'fd00::3', owner: async () => [9700] }, 0, (t) => notes.push(t));
    expect(await probe.read()).toBeUndefined();
    expect(probe.unavailable).toBe('ss on hv1 does not say which process owns the connections to fd00::3 (it needs the rights to see the source QEMU\'s sockets)');
    probe.poll();
    expect(probe.rate).toBeUndefined();
    const nopg = new LinkProbe(fake([]), { address: '10.0.0.3', owner: async () => ({ unavailable: 'pgrep (procps) is not installed on hv1' }) }, 0, (t) => notes.push(t));
    expect(await nopg.read()).toBeUndefined();
    expect(notes).toEqual([`link speed not measured: ${probe.unavailable}`, 'link speed not measured: pgrep (procps) is not installed on hv1']);
  });

  it('no ss on the host: says so once and stops asking; a failed read keeps the last figure', async () => {
    const notes: string[] = [];
    const probe = new LinkProbe(fake([{ stdout: SS }, { code: 1, stderr: 'boom' }, { code: 127, stderr: 'sh: 1: ss: not found' }]), { address: '10.0.0.2', port: 1 }, 0, (t) => notes.push(t));
    const first = await probe.read();
    expect(await probe.read()).toBe(first);
    await probe.read();
    expect(probe.unavailable).toMatch(/ss \(iproute2\) is not installed on hv1/);
    expect(notes).toEqual(['link speed not measured: ss (iproute2) is not installed on hv1']);
    probe.poll();
    expect(probe.rate).toBe(first);
  });
});
