/** A throwaway local lab (own root, own config dir) for tests that migrate the demo guest. */
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { ConsoleService } from '../../electron/core/console-service';
import type { ConsoleServiceOptions } from '../../electron/core/console-service';
import { labDown, labHosts, labUp, waitGuestReady } from '../../electron/core/lab/local-lab';
import type { LabUpOptions } from '../../electron/core/lab/local-lab';
import { GuestConsole } from '../../electron/core/lab/demo-guest';
import { LocalTransport } from '../../electron/core/transport/local-transport';
import { readPid, vmFiles, processAlive } from '../../electron/core/hosts/vm-launcher';
import type { HostConfig } from '../../shared/model/host';
import { readdirSync, readFileSync } from 'node:fs';
import { killPid } from './processes';

/** pids whose command line mentions `text` (a zombie's is empty, so it never matches). */
export function processesMentioning(text: string): number[] {
  const pids: number[] = [];
  for (const d of readdirSync('/proc')) {
    if (!/^\d+$/.test(d) || Number(d) === process.pid) continue;
    try {
      if (readFileSync(`/proc/${d}/cmdline`, 'utf8').includes(text)) pids.push(Number(d));
    } catch {
      // gone
    }
  }
  return pids;
}

export interface TestLab {
  root: string;
  configDir: string;
  service: ConsoleService;
  hosts: HostConfig[];
  up(options?: Omit<LabUpOptions, 'root'>): Promise<void>;
  /** pid of the demo VM on a lab host, if it runs there. */
  pidOn(hostId: string, vm?: string): Promise<number | undefined>;
  guest(hostId: string, vm?: string): Promise<GuestConsole>;
  /** Waits until a demo guest answers on its serial console. */
  waitGuest(hostId: string, vm?: string): Promise<void>;
  close(): Promise<void>;
}

/** `extraHosts` get the lab root, e.g. to reach lab-a's runtime dir over SSH as another host. */
export async function makeTestLab(serviceOptions: Partial<ConsoleServiceOptions> = {}, extraHosts: (root: string) => HostConfig[] = () => []): Promise<TestLab> {
  const root = mkdtempSync(path.join(tmpdir(), 'ferry-testlab-'));
  const configDir = mkdtempSync(path.join(tmpdir(), 'ferry-testcfg-'));
  let hosts = labHosts(root);
  let all = [...hosts, ...extraHosts(root)];
  // Asked each time: a demo that moves a lab host to another QEMU is seen at once.
  const builtinHosts = () => [...labHosts(root), ...extraHosts(root)];
  let service = new ConsoleService({ configDir, labRoot: root, ...serviceOptions, builtinHosts });
  const local = new LocalTransport();
  const dirOf = (hostId: string) => {
    const h = all.find((x) => x.id === hostId);
    if (!h?.runtimeDir) throw new Error(`no test host ${hostId}`);
    return h.runtimeDir;
  };
  return {
    root,
    configDir,
    get service() {
      return service;
    },
    get hosts() {
      return hosts;
    },
    async up(options = {}) {
      // FERRY_TEST_ACCEL=tcg runs a suite under TCG on a KVM machine (a test's own accel wins).
      const accel = process.env.FERRY_TEST_ACCEL;
      await labUp({ root, ...(accel === 'tcg' || accel === 'kvm' ? { accel } : {}), ...options });
      const before = JSON.stringify(hosts);
      if (JSON.stringify(labHosts(root)) !== before) {
        // The lab hosts changed (namespaces now, another QEMU): the service must see them as they are.
        await service.dispose();
        hosts = labHosts(root);
        all = [...hosts, ...extraHosts(root)];
        service = new ConsoleService({ configDir, labRoot: root, ...serviceOptions, builtinHosts });
      }
    },
    async pidOn(hostId, vm = 'demo') {
      const pid = await readPid(local, vmFiles(dirOf(hostId), vm).pidFile);
      return pid && (await processAlive(local, pid)) ? pid : undefined;
    },
    async guest(hostId, vm = 'demo') {
      return GuestConsole.open(local, vmFiles(dirOf(hostId), vm).serialSocket);
    },
    async waitGuest(hostId, vm = 'demo') {
      await waitGuestReady(local, vmFiles(dirOf(hostId), vm).serialSocket);
    },
    async close() {
      await service.dispose();
      await labDown({ root });
      // Safety net: a QEMU whose files live under this lab (e.g. launched by an engine still
      // running when a test timed out) is killed by pid.
      for (const pid of processesMentioning(root)) await killPid(pid);
      rmSync(configDir, { recursive: true, force: true });
      rmSync(root, { recursive: true, force: true });
    },
  };
}
