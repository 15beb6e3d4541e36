// The demo guest (assets/guest) booted in real QEMU: protocol, rate control, integrity checks,
// reproducible build. Self-contained on purpose: it pins the guest's serial protocol as the
// guest implements it, independently of Ferry's own parser.
import { spawn, spawnSync } from 'node:child_process';
import type { ChildProcess } from 'node:child_process';
import { closeSync, cpSync, existsSync, mkdtempSync, openSync, readFileSync, rmSync } from 'node:fs';
import net from 'node:net';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { afterAll, afterEach, describe, expect, it } from 'vitest';
import { isAlive, killPid, sleep } from '../support/processes';

const GUEST_DIR = fileURLToPath(new URL('../../assets/guest/', import.meta.url));
const GUEST_ELF = path.join(GUEST_DIR, 'guest.elf');
const QBOOT = '/usr/share/qemu/qboot.rom';
const QEMU = 'qemu-system-x86_64';

type Accel = 'kvm' | 'tcg';

function kvmUsable(): boolean {
  try {
    closeSync(openSync('/dev/kvm', 'r+'));
    return true;
  } catch {
    return false;
  }
}
const KVM = kvmUsable();
/** The accelerator for the tests that need only one: KVM when usable. */
const ACCEL: Accel = KVM ? 'kvm' : 'tcg';

/** `KEYWORD k=v k=v` -> { k: v }. */
function fields(line: string): Record<string, string> {
  const out: Record<string, string> = {};
  for (const part of line.trim().split(/\s+/).slice(1)) {
    const eq = part.indexOf('=');
    if (eq > 0) out[part.slice(0, eq)] = part.slice(eq + 1);
  }
  return out;
}
const num = (line: string, key: string): number => {
  const v = fields(line)[key];
  if (v === undefined || !/^-?\d+$/.test(v)) throw new Error(`no integer ${key} in: ${line}`);
  return Number(v);
};

interface Line {
  at: number;
  text: string;
}

/** Raw QMP over the unix socket: greeting, capabilities, then one command at a time. */
class Qmp {
  private buf = '';
  private readonly pending: ((msg: Record<string, unknown>) => void)[] = [];
  private greeted!: Promise<void>;

  private constructor(private readonly sock: net.Socket) {}

  static async connect(socketPath: string): Promise<Qmp> {
    const sock = net.connect(socketPath);
    const qmp = new Qmp(sock);
    let greet!: () => void;
    qmp.greeted = new Promise<void>((r) => (greet = r));
    sock.setEncoding('utf8');
    sock.on('error', () => undefined);
    sock.on('data', (chunk: string) => {
      qmp.buf += chunk;
      let i: number;
      while ((i = qmp.buf.indexOf('\n')) >= 0) {
        const raw = qmp.buf.slice(0, i).trim();
        qmp.buf = qmp.buf.slice(i + 1);
        if (!raw) continue;
        const msg = JSON.parse(raw) as Record<string, unknown>;
        if ('QMP' in msg) greet();
        else if ('return' in msg || 'error' in msg) qmp.pending.shift()?.(msg);
      }
    });
    await withTimeout(qmp.greeted, 10_000, 'QMP greeting');
    await qmp.execute('qmp_capabilities');
    return qmp;
  }

  async execute(command: string, args?: Record<string, unknown>): Promise<Record<string, unknown>> {
    const reply = new Promise<Record<string, unknown>>((r) => this.pending.push(r));
    this.sock.write(JSON.stringify(args ? { execute: command, arguments: args } : { execute: command }) + '\n');
    const msg = await withTimeout(reply, 10_000, `QMP ${command}`);
    if ('error' in msg) throw new Error(`QMP ${command}: ${JSON.stringify(msg.error)}`);
    return msg.return as Record<string, unknown>;
  }

  close(): void {
    this.sock.destroy();
  }
}

async function withTimeout<T>(p: Promise<T>, ms: number, what: string): Promise<T> {
  let timer: NodeJS.Timeout | undefined;
  const timeout = new Promise<never>((_, reject) => {
    timer = setTimeout(() => reject(new Error(`timed out after ${ms} ms waiting for ${what}`)), ms);
  });
  try {
    return await Promise.race([p, timeout]);
  } finally {
    clearTimeout(timer);
  }
}

/** One QEMU running the guest, with its serial console on a unix socket. */
class GuestVm {
  readonly lines: Line[] = [];
  private buf = '';
  private sock: net.Socket | undefined;
  private qmp: Qmp | undefined;
  private stderr = '';
  readonly startedAt = Date.now();

  private constructor(
    readonly accel: Accel,
    readonly dir: string,
    private readonly child: ChildProcess,
    readonly pid: number,
  ) {
    child.stderr?.on('data', (c: Buffer) => (this.stderr += c.toString()));
  }

  static async start(accel: Accel, append = ''): Promise<GuestVm> {
    const dir = mkdtempSync(path.join(tmpdir(), 'ferry-guest-'));
    const argv = [
      '-nodefaults', '-display', 'none', '-no-user-config',
      '-machine', 'pc', '-accel', accel, '-cpu', 'qemu64,-pni', '-m', '524100k',
      ...(existsSync(QBOOT) ? ['-bios', QBOOT] : []),
      '-kernel', GUEST_ELF, '-append', append,
      '-chardev', `socket,id=ser0,path=${path.join(dir, 'serial.sock')},server=on,wait=off`,
      '-serial', 'chardev:ser0',
      '-qmp', `unix:${path.join(dir, 'qmp.sock')},server=on,wait=off`,
    ];
    const child = spawn(QEMU, argv, { stdio: ['ignore', 'ignore', 'pipe'] });
    if (child.pid === undefined) throw new Error(`cannot start ${QEMU}`);
    const vm = new GuestVm(accel, dir, child, child.pid);
    running.add(vm);
    const serial = path.join(dir, 'serial.sock');
    const deadline = Date.now() + 10_000;
    while (!existsSync(serial)) {
      if (!isAlive(vm.pid) || Date.now() > deadline) throw new Error(`QEMU did not create its serial socket: ${vm.stderr}`);
      await sleep(10);
    }
    // The socket file appears at bind(), a moment before listen(): retry a refused connect.
    for (;;) {
      try {
        await vm.connectSerial(serial);
        break;
      } catch (e) {
        const code = (e as NodeJS.ErrnoException).code;
        if ((code !== 'ECONNREFUSED' && code !== 'ENOENT') || !isAlive(vm.pid) || Date.now() > deadline) throw e;
        await sleep(20);
      }
    }
    return vm;
  }

  private connectSerial(serial: string): Promise<void> {
    return new Promise((resolve, reject) => {
      const sock = net.connect(serial, () => resolve());
      this.sock = sock;
      sock.setEncoding('utf8');
      sock.on('error', reject);
      sock.on('data', (chunk: string) => {
        this.buf += chunk;
        let i: number;
        while ((i = this.buf.indexOf('\n')) >= 0) {
          const text = this.buf.slice(0, i).replace(/\r$/, '');
          this.buf = this.buf.slice(i + 1);
          if (text.trim()) this.lines.push({ at: Date.now(), text });
        }
      });
    });
  }

  /** The first line from index `from` on that matches. */
  async waitLine(re: RegExp, from = 0, timeoutMs = 15_000): Promise<Line & { index: number }> {
    const deadline = Date.now() + timeoutMs;
    for (;;) {
      for (let i = from; i < this.lines.length; i++) {
        const l = this.lines[i]!;
        if (re.test(l.text)) return { ...l, index: i };
      }
      if (!isAlive(this.pid)) throw new Error(`QEMU exited while waiting for ${re}: ${this.stderr}`);
      if (Date.now() > deadline) throw new Error(`timed out waiting for ${re}; last lines:\n${this.lines.slice(-5).map((l) => l.text).join('\n')}`);
      await sleep(10);
    }
  }

  /** Sends one command and returns the first reply line matching `reply`. */
  async command(cmd: string, reply: RegExp, timeoutMs = 15_000): Promise<string> {
    const from = this.lines.length;
    this.sock!.write(cmd + '\n');
    return (await this.waitLine(reply, from, timeoutMs)).text;
  }

  /** Heartbeats that arrive during the next `ms`. */
  async heartbeats(ms: number): Promise<string[]> {
    const from = this.lines.length;
    await sleep(ms);
    return this.lines.slice(from).map((l) => l.text).filter((t) => t.startsWith('HB '));
  }

  async qmpClient(): Promise<Qmp> {
    this.qmp ??= await Qmp.connect(path.join(this.dir, 'qmp.sock'));
    return this.qmp;
  }

  async stop(): Promise<void> {
    running.delete(this);
    this.qmp?.close();
    this.sock?.destroy();
    await killPid(this.pid);
    this.child.stderr?.destroy();
    rmSync(this.dir, { recursive: true, force: true });
  }
}

const running = new Set<GuestVm>();
const started: number[] = [];

async function boot(accel: Accel, append = ''): Promise<GuestVm> {
  const vm = await GuestVm.start(accel, append);
  started.push(vm.pid);
  await vm.waitLine(/^FERRY-GUEST /);
  return vm;
}

async function stopAll(): Promise<void> {
  await Promise.all([...running].map((vm) => vm.stop()));
  for (const pid of started) expect(isAlive(pid), `QEMU ${pid} still running`).toBe(false);
}

/** calc-dirty-rate (page-sampling, 1 s) and poll query-dirty-rate until measured: MiB/s. */
async function qemuDirtyRate(vm: GuestVm): Promise<number> {
  const qmp = await vm.qmpClient();
  // 4096 sampled pages per GiB (the most QEMU 7.2 allows): the default 512 leaves only ~32
  // samples in a 64 MiB working set, far too few for a figure within tens of percent.
  await qmp.execute('calc-dirty-rate', { 'calc-time': 1, 'sample-pages': 4096, mode: 'page-sampling' });
  const deadline = Date.now() + 10_000;
  for (;;) {
    await sleep(200);
    const r = await qmp.execute('query-dirty-rate');
    if (r.status === 'measured') return Number(r['dirty-rate']);
    if (Date.now() > deadline) throw new Error(`dirty rate not measured: ${JSON.stringify(r)}`);
  }
}

const mean = (xs: number[]) => xs.reduce((a, b) => a + b, 0) / xs.length;

describe('demo guest', () => {
  afterEach(stopAll);
  afterAll(stopAll);

  const accels: Accel[] = KVM ? ['kvm', 'tcg'] : ['tcg'];
  for (const accel of accels) {
    it(`boots and sends heartbeats (${accel})`, async () => {
      const vm = await GuestVm.start(accel, 'hb=100');
      started.push(vm.pid);
      const hello = await vm.waitLine(/^FERRY-GUEST /);
      const f = fields(hello.text);
      expect(f).toMatchObject({ version: '1', ws_mib: '32', rate: '0', words: '16', hb_ms: '100' });
      expect(num(hello.text, 'mem_mib')).toBeGreaterThanOrEqual(500);
      expect(num(hello.text, 'mem_mib')).toBeLessThanOrEqual(512);
      expect(num(hello.text, 'tsc_khz')).toBeGreaterThan(100_000);

      const first = await vm.waitLine(/^HB /, hello.index);
      const later = await vm.waitLine(/^HB seq=4 /, first.index);
      const hbs = vm.lines.slice(first.index, later.index + 1).map((l) => l.text).filter((t) => t.startsWith('HB '));
      const seqs = hbs.map((t) => num(t, 'seq'));
      expect(seqs).toEqual([...seqs].sort((a, b) => a - b));
      expect(new Set(seqs).size).toBe(seqs.length);
      for (const t of hbs) {
        expect(t).toMatch(/^HB seq=\d+ t_ms=\d+ ws_mib=32 rate=0 achieved_kib_s=0 stall_us=\d+ writes=0$/);
      }
      const tms = hbs.map((t) => num(t, 't_ms'));
      expect(tms[tms.length - 1]! - tms[0]!).toBeGreaterThan(200);
      console.log(
        `[guest ${accel}] boot: FERRY-GUEST after ${hello.at - vm.startedAt} ms, first heartbeat after ${first.at - vm.startedAt} ms ` +
          `(tsc_khz=${f.tsc_khz}, mem_mib=${f.mem_mib})`,
      );
    });
  }

  it(`holds the target dirtying rate, as QEMU measures it too (${ACCEL})`, async () => {
    const vm = await boot(ACCEL, 'ws=64 hb=100');
    const report: string[] = [];
    for (const target of [20, 100]) {
      expect(await vm.command(`r ${target}`, /^(OK r|ERR)/)).toBe(`OK r rate=${target}`);
      await sleep(300);
      const hbs = await vm.heartbeats(2000);
      expect(hbs.length).toBeGreaterThanOrEqual(10);
      const achievedMiB = mean(hbs.map((t) => num(t, 'achieved_kib_s'))) / 1024;
      expect(achievedMiB).toBeGreaterThan(target * 0.8);
      expect(achievedMiB).toBeLessThan(target * 1.2);
      // QEMU counts distinct dirtied pages: its 1 s window must not wrap the working set, which
      // 100 MiB/s over 64 MiB would (it then reports ~64). Measure 100 MiB/s over 192 MiB.
      if (target > 64 * 0.8) expect(await vm.command('w 192', /^(OK w|ERR)/, 30_000)).toBe('OK w ws_mib=192');
      await sleep(300);
      const qemuMiB = await qemuDirtyRate(vm);
      expect(qemuMiB).toBeGreaterThan(target * 0.65);
      expect(qemuMiB).toBeLessThan(target * 1.35);
      report.push(`target ${target} MiB/s: guest ${achievedMiB.toFixed(1)} MiB/s over ${hbs.length} heartbeats, QEMU dirty-rate ${qemuMiB} MiB/s`);
    }
    console.log(`[guest ${ACCEL}] rate: ${report.join('; ')}`);
  });

  it(`verify passes on a healthy guest and catches corrupt and stale pages (${ACCEL})`, async () => {
    const vm = await boot(ACCEL);
    expect(await vm.command('v', /^VERIFY /)).toMatch(/^VERIFY result=ok pages=8192 bad=0 stale=0 first_bad=-1 ms=\d+$/);
    expect(await vm.command('x 5', /^(OK x|ERR)/)).toBe('OK x page=5');
    const bad = await vm.command('v', /^VERIFY /);
    expect(fields(bad)).toMatchObject({ result: 'fail', first_bad: '5' });
    expect(num(bad, 'bad')).toBeGreaterThanOrEqual(1);
    await vm.stop();

    // A fresh guest: page 7 is still at version 0, so `o` writes a consistent version 1.
    const fresh = await boot(ACCEL);
    expect(await fresh.command('o 7', /^(OK o|ERR)/)).toBe('OK o page=7');
    const stale = await fresh.command('v', /^VERIFY /);
    expect(fields(stale)).toMatchObject({ result: 'fail', bad: '0', first_bad: '7' });
    expect(num(stale, 'stale')).toBeGreaterThanOrEqual(1);

    // After some rewrites (k shrinking in between), everything is consistent again; then `o`
    // rolls a rewritten page back to its previous version.
    await fresh.command('w 8', /^OK w/);
    await fresh.command('r 200', /^OK r/);
    // Wait on the guest's own counter, not the clock: a busy 2-core host may starve the vCPU.
    const writesNow = async () => num(await fresh.command('s', /^STATUS /), 'writes');
    const until = async (n: number) => {
      for (let i = 0; i < 200 && (await writesNow()) < n; i++) await sleep(50);
    };
    await until(2 * 2048);
    await fresh.command('k 3', /^OK k/);
    await until((await writesNow()) + 2 * 2048);
    await fresh.command('r 0', /^OK r/);
    const after = await fresh.command('v', /^VERIFY /);
    expect(after).toMatch(/^VERIFY result=ok pages=2048 bad=0 stale=0 first_bad=-1 /);
    const status = await fresh.command('s', /^STATUS /);
    expect(num(status, 'writes')).toBeGreaterThan(2048); // every page rewritten at least once
    expect(await fresh.command('o 11', /^(OK o|ERR)/)).toBe('OK o page=11');
    expect(fields(await fresh.command('v', /^VERIFY /))).toMatchObject({ result: 'fail', bad: '0', stale: '1', first_bad: '11' });
  });

  it(`answers commands with OK and rejects bad ones with ERR (${ACCEL})`, async () => {
    const vm = await boot(ACCEL, 'hb=0');
    const reply = (cmd: string) => vm.command(cmd, /^(OK|ERR|STATUS|VERIFY) /);
    expect(await reply('w 64')).toBe('OK w ws_mib=64');
    expect(await reply('k 100')).toBe('OK k words=100');
    expect(await reply('r 30')).toBe('OK r rate=30');
    expect(await reply('r max')).toBe('OK r rate=max');
    expect(await reply('s')).toMatch(/^STATUS seq=0 t_ms=\d+ ws_mib=64 rate=max achieved_kib_s=\d+ stall_us=\d+ writes=\d+$/);
    expect(await reply('r 0')).toBe('OK r rate=0');
    expect(await reply('v')).toMatch(/^VERIFY result=ok pages=16384 bad=0 stale=0 first_bad=-1 ms=\d+$/);

    expect(await reply('h 50')).toBe('OK h hb_ms=50');
    const hbs = await vm.heartbeats(600);
    expect(hbs.length).toBeGreaterThanOrEqual(6);
    expect(hbs.length).toBeLessThanOrEqual(14);
    expect(await reply('h 0')).toBe('OK h hb_ms=0');
    await sleep(100);
    expect(await vm.heartbeats(300)).toEqual([]);

    for (const bad of ['r -3', 'zzz', 'w 999999', 'w 0', 'w abc', 'k 0', 'k 510', 'h 5', 'x 99999', 'o -1', 'v now', 'r']) {
      expect(await reply(bad), bad).toMatch(/^ERR \S/);
    }
    // Still alive and unchanged after the errors.
    expect(await reply('s')).toMatch(/ ws_mib=64 rate=0 /);
  });

  it('builds reproducibly: a clean rebuild matches the committed guest.elf', (ctx) => {
    const have = (cmd: string) => spawnSync(cmd, ['--version'], { stdio: 'ignore' }).status === 0;
    if (!have('gcc') || !have('make') || !have('ld') || !have('objcopy')) {
      console.log('[guest] gcc/make/binutils missing: reproducible-build check skipped');
      ctx.skip();
    }
    const dir = mkdtempSync(path.join(tmpdir(), 'ferry-guest-build-'));
    try {
      const copy = path.join(dir, 'guest');
      cpSync(GUEST_DIR, copy, { recursive: true, filter: (src) => !/^build(\/|$)/.test(path.relative(GUEST_DIR, src)) });
      const res = spawnSync('make', ['-C', copy, 'clean', 'all'], { encoding: 'utf8', timeout: 50_000 });
      expect(res.status, res.stderr).toBe(0);
      const rebuilt = readFileSync(path.join(copy, 'guest.elf'));
      const committed = readFileSync(GUEST_ELF);
      expect(rebuilt.length).toBe(committed.length);
      expect(rebuilt.equals(committed)).toBe(true);
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });
});
