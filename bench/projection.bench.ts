/**
 * Projection accuracy on real lab migrations: three dirty rates x two bandwidth caps on the
 * fast loopback link (max-bandwidth caps it, the final copy runs uncapped), and, where
 * network namespaces work, three dirty rates x two tc-tbf link rates (no cap). For each:
 * Ferry's projected downtime and QEMU's expected-downtime at the last pre-copy sample,
 * against the actual downtime; Ferry's ETA error at 25/50/75 % of the elapsed time.
 * Ferry learns each host pair's switchover cost from the migrations before (a warm-up
 * migration per link primes it). Last line: one JSON object.
 * Targets: Ferry's median |error| <= 1/4 of QEMU's, never > QEMU's + 10 ms; ETA error at 50 % <= 15 %.
 */
import { makeTestLab } from '../test/support/lab';
import { netnsAvailable, readLabState, shapeLink } from '../electron/core/lab/local-lab';
import { readTimeline } from '../electron/core/recorder/timeline-reader';
import type { Migration } from '../electron/core/migration/migration-engine';
import type { GuestConsole } from '../electron/core/lab/demo-guest';

process.stdout.on('error', () => {});
const MEM_KIB = 131_000;
const RATES = [5, 12, 20];
const median = (xs: number[]) => {
  const s = [...xs].sort((a, b) => a - b);
  return s.length ? (s[Math.floor((s.length - 1) / 2)]! + s[Math.ceil((s.length - 1) / 2)]!) / 2 : NaN;
};
const r1 = (x: number) => Math.round(x * 10) / 10;

interface Case { link: string; rate: number; cap?: number; tbf?: number; actual: number; ferry?: number; qemu?: number; eta: Record<string, number | undefined> }
const cases: Case[] = [];

function analyse(m: Migration, link: string, rate: number, extra: Partial<Case>): Case {
  const t = readTimeline(m.timelineFile);
  const final = t.end!;
  const pre = t.samples.filter((s) => s.phase === 'precopy');
  const last = pre.at(-1);
  const endAt = (t.records.find((r) => r.type === 'phase' && (r as { phase: string }).phase === 'commitment') as { t: number }).t - m.startedAt;
  const eta: Record<string, number | undefined> = {};
  for (const f of [0.25, 0.5, 0.75]) {
    const s = [...pre].reverse().find((x) => x.elapsedMs <= f * endAt && x.projection?.etaMs !== undefined);
    eta[String(f)] = s ? Math.abs(s.elapsedMs + s.projection!.etaMs! - endAt) / endAt : undefined;
  }
  const c: Case = { link, rate, actual: final.downtimeMs ?? NaN, eta, ...extra };
  const fp = last?.projection?.switchoverDowntimeMs ?? last?.projection?.downtimeMs;
  if (fp !== undefined) c.ferry = fp;
  if (last?.expectedDowntimeMs !== undefined) c.qemu = last.expectedDowntimeMs;
  return c;
}

async function setRate(con: GuestConsole, r: number) {
  await con.command(`r ${r}`);
}

async function matrix(link: string, netns: boolean, variants: { cap?: number; tbf?: number }[]) {
  const lab = await makeTestLab();
  try {
    await lab.up({ memoryKiB: MEM_KIB, workload: { wsMiB: 32, rateMiBs: 0 }, ...(netns ? { netns: true, netnsPrefix: `fpb${process.pid % 10000}` } : {}) });
    const ns = netns ? readLabState(lab.root)!.netns! : undefined;
    let where = 'lab-a';
    const other = () => (where === 'lab-a' ? 'lab-b' : 'lab-a');
    const migrate = async (plan: { maxBandwidth?: number }) => {
      const m = await lab.service.engine.start({ vm: 'demo', from: where, to: other(), downtimeLimitMs: 300, ...plan });
      await m.whenDone();
      where = other();
      return m;
    };
    for (const v of variants) {
      if (ns) await shapeLink(ns, v.tbf ?? null);
      // warm-up in both directions: Ferry learns each pair's switchover cost
      for (let i = 0; i < 2; i++) {
        const con = await lab.guest(where);
        await setRate(con, 5);
        con.close();
        await migrate(v.cap ? { maxBandwidth: v.cap } : {});
      }
      for (const rate of RATES) {
        const con = await lab.guest(where);
        await setRate(con, rate);
        con.close();
        await new Promise((r) => setTimeout(r, 1200));
        const m = await migrate(v.cap ? { maxBandwidth: v.cap } : {});
        const c = analyse(m, link, rate, v);
        cases.push(c);
        console.log(`${link} ${v.cap ? `cap ${v.cap / 1e6} MB/s` : `tbf ${v.tbf! / 1e6} Mbit/s`} dirty ${rate} MiB/s: actual ${c.actual} ms, Ferry ${c.ferry?.toFixed(0)} ms, QEMU ${c.qemu} ms, ETA err 25/50/75% ${Object.values(c.eta).map((e) => (e === undefined ? '-' : `${(e * 100).toFixed(0)}%`)).join('/')}`);
      }
    }
  } finally {
    await lab.close();
  }
}

await matrix('loopback', false, [{ cap: 40e6 }, { cap: 80e6 }]);
const ns = await netnsAvailable();
if (ns.ok) await matrix('netns', true, [{ tbf: 300e6 }, { tbf: 600e6 }]);
else console.log(`netns part skipped: ${ns.reason}`);

const ferryErr = cases.filter((c) => c.ferry !== undefined).map((c) => Math.abs(c.ferry! - c.actual));
const qemuErr = cases.filter((c) => c.qemu !== undefined).map((c) => Math.abs(c.qemu! - c.actual));
const worse = cases.filter((c) => c.ferry !== undefined && c.qemu !== undefined && Math.abs(c.ferry - c.actual) > Math.abs(c.qemu - c.actual) + 10).length;
const eta50 = cases.map((c) => c.eta['0.5']).filter((e): e is number => e !== undefined);
const mf = median(ferryErr);
const mq = median(qemuErr);
console.log(JSON.stringify({
  bench: 'projection', cases: cases.length,
  ferryMedianAbsErrMs: r1(mf), qemuMedianAbsErrMs: r1(mq), ratio: r1(mf / mq * 100) / 100,
  casesWhereFerryWorseBy10ms: worse,
  etaMedianErr: { p25: r1(median(cases.map((c) => c.eta['0.25']).filter((e): e is number => e !== undefined)) * 100), p50: r1(median(eta50) * 100), p75: r1(median(cases.map((c) => c.eta['0.75']).filter((e): e is number => e !== undefined)) * 100) },
  targets: { ratioMax: 0.25, worseCasesMax: 0, eta50PctMax: 15 },
  met: mf <= mq / 4 && worse === 0 && median(eta50) <= 0.15,
}));
