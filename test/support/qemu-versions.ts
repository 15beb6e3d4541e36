/**
 * The QEMUs the integration tests run against: the system's (Debian 12: 7.2) and QEMU 10.0
 * from bookworm-backports, extracted into the work tree by `scripts/fetch-qemu.mjs` (which
 * CI's set-up runs; here it is run once if the cache is missing, and is fast when cached).
 * Where QEMU 10 cannot be had, `qemu10()` says why and the tests that need it are skipped
 * with that reason printed.
 */
import { spawnSync } from 'node:child_process';
import path from 'node:path';
import type { QemuInstall } from '../../shared/model/host';

const root = path.resolve(import.meta.dirname, '..', '..');

export type Qemu10 = { ok: true; version: string; install: Required<Pick<QemuInstall, 'binary' | 'dataDir'>> } | { ok: false; reason: string };

let cached: Qemu10 | undefined;

export function qemu10(): Qemu10 {
  if (cached) return cached;
  if (process.env.FERRY_NO_QEMU10 === '1') return (cached = { ok: false, reason: 'FERRY_NO_QEMU10=1' });
  const r = spawnSync(process.execPath, [path.join(root, 'scripts', 'fetch-qemu.mjs'), '--json'], { encoding: 'utf8', timeout: 600_000 });
  if (r.status !== 0) {
    const why = (r.stderr || r.error?.message || `exit ${r.status}`).trim().split('\n').at(-1);
    return (cached = { ok: false, reason: `QEMU 10.0 cannot be had here: ${why}` });
  }
  const j = JSON.parse(r.stdout) as { version: string; binary: string; dataDir: string };
  return (cached = { ok: true, version: j.version, install: { binary: j.binary, dataDir: j.dataDir } });
}

/** Skip reason for a test that needs QEMU 10 (printed once per file), or undefined when it is here. */
export function needQemu10(): string | undefined {
  const q = qemu10();
  if (q.ok) return undefined;
  console.log(`skipped: ${q.reason}`);
  return q.reason;
}

export interface QemuPair {
  name: string;
  /** QEMU of lab-a (the source) and lab-b (the destination); undefined = the system's. */
  a?: QemuInstall;
  b?: QemuInstall;
}

/** The pairs a migration test runs over: 7.2→7.2, 10.0→10.0 and 7.2→10.0 (the last two only where QEMU 10 is here). */
export function migrationPairs(): { pair: QemuPair; skip?: string }[] {
  const q = qemu10();
  const pairs: { pair: QemuPair; skip?: string }[] = [{ pair: { name: '7.2→7.2' } }];
  if (q.ok) {
    pairs.push({ pair: { name: `${q.version}→${q.version}`, a: q.install, b: q.install } });
    pairs.push({ pair: { name: `7.2→${q.version}`, b: q.install } });
  } else {
    console.log(`skipped: the 10.0→10.0 and 7.2→10.0 runs: ${q.reason}`);
    pairs.push({ pair: { name: '10.0→10.0' }, skip: q.reason }, { pair: { name: '7.2→10.0' }, skip: q.reason });
  }
  return pairs;
}
