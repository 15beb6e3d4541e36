/**
 * The console service implements shared/contract.ts once; the Electron IPC bridge and the
 * browser-mode WebSocket server are two thin adapters over it. Every request is validated
 * here against the contract's schema, and every answer is a Result: no stack trace ever
 * crosses the boundary.
 */
import path from 'node:path';
import { invoke as contract, events as eventSchemas, describeIssues, isInvokeChannel } from '../../shared/contract';
import type { EventChannel, EventPayload, HostInfo, InvokeChannel, InvokeRequest, InvokeResponse, MigrationControl } from '../../shared/contract';
import { FerryException, toFerryError } from '../../shared/errors';
import type { FerryError } from '../../shared/errors';
import { err, ok } from '../../shared/result';
import type { Result } from '../../shared/result';
import type { HostConfig, HostConnectionState, QemuInstall } from '../../shared/model/host';
import { HostRegistry, defaultConfigDir } from './hosts/host-registry';
import { VmStateCache } from './hosts/vm-discovery';
import { CleanupLedger } from './hosts/cleanup-ledger';
import { startControlServer } from './control-server';
import type { ControlServer } from './control-server';
import type { HostTransport } from './transport/host-transport';
import { localTransportFor } from './transport/local-transport';
import { SshTransport } from './transport/ssh-transport';
import type { SshTransportOptions } from './transport/ssh-transport';
import { appendKnownHost, formatKnownHostsLine } from './transport/known-hosts';
import { FERRY_VERSION, MigrationEngine } from './migration/migration-engine';
import { SwitchoverStore } from './migration/switchover-store';
import type { Migration } from './migration/migration-engine';
import { QmpDriver } from './migration/drivers/qmp-driver';
import { LibvirtDriver } from './migration/drivers/libvirt-driver';
import type { MigrationPlan } from '../../shared/model/migration';
import { startEvacuation } from './migration/evacuation';
import type { Evacuation, EvacuationRequest } from './migration/evacuation';
import { labDown, labRoot, labStatus, labUp } from './lab/local-lab';
import { runLabDemo } from './lab/lab-demo';
import { SecretStore } from './secrets';
import type { SecretCipher } from './secrets';
import { listTimelines, readTimelineText } from './recorder/timeline-files';
import { parseTimeline } from '../../shared/model/timeline';
import { entryFromTimeline } from '../../shared/report/picture';
import type { PreflightResult } from '../../shared/model/preflight';
import { GuestConsole } from './lab/demo-guest';
import { configureLog, logFile, rootLog } from './log';
import { diagnosticsText } from './diagnostics';
import { vmFiles } from './hosts/vm-launcher';
import { parseQemuVersion, probeQemu, qemuOf, qemuVersionAndKvm } from './hosts/qemu-install';
import { optionalFeatures } from './qmp/qmp-schema';
import { runtimeDirOf } from './hosts/vm-discovery';
import { listStates, restoreState, saveState } from './states/vm-state';
import { LibvirtPool } from './libvirt/libvirt-connection';
import { requireDomain, serialSocketOf } from './libvirt/libvirt-domains';
import { parseVersion } from './libvirt/virsh-text';
import type { RestoreRequest, SaveRequest } from '../../shared/model/saved-state';

export interface ConsoleServiceOptions {
  /** Default `$XDG_CONFIG_HOME/ferry`. */
  configDir?: string;
  /** Hosts that always exist (the local lab). */
  builtinHosts?: HostConfig[] | (() => HostConfig[]);
  /** Passed to every SSH transport (tests point homeDir at a temp dir). */
  ssh?: SshTransportOptions;
  /** The local lab's root (default: labRoot()). */
  labRoot?: string;
  /** First delay before re-establishing a dropped connection; doubles up to 30 s. 0 = never. */
  reconnectDelayMs?: number;
  /** Encrypts remembered passphrases (the desktop shell's safeStorage); without it nothing is remembered. */
  secretCipher?: SecretCipher;
  /**
   * Pick up, on each host as it connects, the migrations a previous Ferry process started
   * there (a console, `ferry recover`); short CLI commands leave them alone.
   */
  recoverOnConnect?: boolean;
}

interface HostRuntime {
  transport: HostTransport;
  state: HostConnectionState;
  lastError?: FerryError;
  /** Set while the user has asked for the connection: a drop is then re-established. */
  wanted: boolean;
  /** Connected at least once: a failed attempt after a drop is retried. */
  everConnected?: boolean;
  /** Its migrations were looked for (once per connection runtime). */
  recovered?: boolean;
  reconnectTimer?: NodeJS.Timeout;
  reconnectDelay: number;
  offState: () => void;
}

const hostLog = rootLog.child('hosts');
/** Failures of a connection attempt that a later attempt may not meet (the network, not the user). */
const RETRIED: readonly string[] = ['SSH_CONNECT_FAILED', 'SSH_DISCONNECTED', 'TRANSPORT_CLOSED', 'HOST_BUSY'];

type Handlers = { [C in InvokeChannel]: (req: never) => Promise<InvokeResponse<C>> };

/** How long a preflight shown in the plan dialog counts as the one a migration started from. */
const PREFLIGHT_KEPT_MS = 10 * 60_000;
/** How long a host's software facts (QEMU, KVM, libvirt) and its available memory are kept (see factsOf). */
const SOFTWARE_FACTS_MS = 60_000;
const MEMORY_FACT_MS = 10_000;

function pickSoftwareFacts(f: NonNullable<HostInfo['facts']>): NonNullable<HostInfo['facts']> {
  const { qemuVersion, qemuFeatures, kvm, libvirtVersion } = f;
  return { ...(qemuVersion !== undefined ? { qemuVersion } : {}), ...(qemuFeatures ? { qemuFeatures } : {}), ...(kvm !== undefined ? { kvm } : {}), ...(libvirtVersion ? { libvirtVersion } : {}) };
}
const preflightKey = (p: MigrationPlan) => `${p.vm}\n${p.from}\n${p.to}`;

export class ConsoleService {
  readonly registry: HostRegistry;
  readonly configDir: string;
  /** Ferry's own known_hosts: keys the user confirmed in the UI. */
  readonly knownHostsFile: string;
  private readonly runtimes = new Map<string, HostRuntime>();
  private readonly listeners = new Map<EventChannel, Set<(payload: unknown) => void>>();
  private disposed = false;
  readonly engine: MigrationEngine;
  /** One libvirt connection (relay + virsh shell) per libvirt host. */
  readonly libvirt = new LibvirtPool();
  /** Destination QEMUs of failed migrations still to be stopped (when their host is reachable). */
  readonly cleanups: CleanupLedger;
  /** What switchovers taught about each host pair, shared with every Ferry process of this user. */
  readonly switchovers: SwitchoverStore;
  readonly labRoot: string;
  /** Where the engine records timelines (and what `timelines:*` may read). */
  readonly timelineDir: string;
  /** The last preflight shown for a plan, recorded with the migration started from it. */
  private readonly preflights = new Map<string, { at: number; result: PreflightResult }>();
  private demoRunning = false;
  private readonly secrets: SecretStore;
  readonly evacuations = new Map<string, Evacuation>();
  /** Set when this process started the lab: it stops it again on exit. */
  labStartedHere = false;
  private readonly engineHosts = { host: (id: string) => this.registry.get(id), transport: (id: string) => this.transportOf(id) };

  constructor(private readonly options: ConsoleServiceOptions = {}) {
    this.configDir = options.configDir ?? defaultConfigDir();
    configureLog({ dir: path.join(this.configDir, 'logs') });
    this.registry = new HostRegistry(this.configDir, options.builtinHosts ?? []);
    this.knownHostsFile = path.join(this.configDir, 'known_hosts');
    this.labRoot = options.labRoot ?? labRoot();
    this.timelineDir = path.join(this.configDir, 'timelines');
    this.secrets = new SecretStore(path.join(this.configDir, 'secrets.json'), options.secretCipher);
    this.cleanups = new CleanupLedger(path.join(this.configDir, 'pending-cleanups.json'));
    this.switchovers = new SwitchoverStore(path.join(this.configDir, 'switchovers.json'));
    // The hypervisor drivers this console uses; the QMP driver (last) takes every host no other claims.
    this.engine = new MigrationEngine(this.engineHosts, {
      timelineDir: this.timelineDir,
      switchovers: this.switchovers,
      drivers: [new LibvirtDriver(this.libvirt), new QmpDriver({ cleanups: this.cleanups, vmStates: this.vmStates })],
    });
    this.engine.onStarted((m) => {
      this.emit('migration:started', m.summary() as unknown as EventPayload<'migration:started'>);
      m.onSample((sample) => this.emit('migration:sample', { id: m.id, sample: sample as EventPayload<'migration:sample'>['sample'] }));
      m.onPhase((p) => {
        this.vmStates.clear();
        this.emit('migration:phase', { id: m.id, ...p });
      });
      m.onRecord((record) => this.emit('migration:record', { id: m.id, record }));
      m.onEnd((final) => this.emit('migration:ended', { id: m.id, final: final as EventPayload<'migration:ended'>['final'] }));
    });
  }

  private get stateJobOptions() {
    return {
      timelineDir: path.join(this.configDir, 'timelines'),
      onSample: (p: { id: string; op: 'save' | 'restore'; sample: unknown }) => this.emit('state:sample', p as EventPayload<'state:sample'>),
    };
  }

  /** Validates `request` against the contract, runs the handler, returns a Result. */
  async invoke(channel: string, request: unknown): Promise<Result<unknown>> {
    if (!isInvokeChannel(channel)) {
      return err({ code: 'INVALID_REQUEST', message: `unknown channel ${JSON.stringify(channel)}` });
    }
    const parsed = contract[channel].request.safeParse(request ?? {});
    if (!parsed.success) {
      return err({ code: 'INVALID_REQUEST', message: `${channel}: ${describeIssues(parsed.error)}` });
    }
    try {
      const handler = this.handlers[channel] as (req: unknown) => Promise<unknown>;
      return ok(await handler(parsed.data));
    } catch (e) {
      return err(toFerryError(e));
    }
  }

  /** `invoke` with the contract's types, for in-process callers (the CLI, tests). */
  async call<C extends InvokeChannel>(channel: C, request: InvokeRequest<C>): Promise<Result<InvokeResponse<C>>> {
    return (await this.invoke(channel, request)) as Result<InvokeResponse<C>>;
  }

  on<C extends EventChannel>(channel: C, listener: (payload: EventPayload<C>) => void): () => void {
    let set = this.listeners.get(channel);
    if (!set) this.listeners.set(channel, (set = new Set()));
    const l = listener as (p: unknown) => void;
    set.add(l);
    return () => set.delete(l);
  }

  private emit<C extends EventChannel>(channel: C, payload: EventPayload<C>): void {
    const checked = eventSchemas[channel].parse(payload);
    for (const l of [...(this.listeners.get(channel) ?? [])]) l(checked);
  }

  private readonly handlers: Handlers = {
    'hosts:list': async () => Promise.all((await this.registry.list()).map((h) => this.info(h))),
    'hosts:add': async (req: HostConfig) => this.info(await this.registry.add(req)),
    'hosts:update': async (req: HostConfig) => {
      const host = await this.registry.update(req);
      await this.drop(host.id);
      return this.info(host);
    },
    'hosts:remove': async (req: { id: string }) => {
      await this.registry.remove(req.id);
      await this.drop(req.id);
      await this.secrets.forget(req.id);
      return {};
    },
    'hosts:connect': async (req: { id: string; passphrase?: string; remember?: boolean }) => {
      const host = await this.registry.get(req.id);
      if (req.remember) {
        if (req.passphrase === undefined) throw new FerryException('INVALID_REQUEST', 'remember: there is no passphrase to remember');
        const st = this.secrets.status();
        if (!st.available) throw new FerryException('UNSUPPORTED', `cannot remember the passphrase: ${st.reason ?? ''}`);
      }
      try {
        await this.connectHost(host, req.passphrase);
      } catch (e) {
        // A remembered passphrase that no longer opens the key is forgotten: the user is asked again.
        if (req.passphrase === undefined && e instanceof FerryException && e.code === 'SSH_PASSPHRASE_REQUIRED' && e.details?.wrong === true) await this.secrets.forget(host.id);
        throw e;
      }
      // Only a passphrase that worked is kept.
      if (req.remember && req.passphrase !== undefined) await this.secrets.set(host.id, req.passphrase);
      return this.info(host);
    },
    'secrets:status': async () => this.secrets.status(),
    'diagnostics:get': async () => {
      const hosts = await this.registry.list();
      const text = diagnosticsText({
        version: FERRY_VERSION,
        configDir: this.configDir,
        hosts: hosts.map((h) => {
          const rt = this.runtimes.get(h.id);
          const facts = this.factCache.get(h.id)?.facts; // the last facts read, whatever their age
          return {
            id: h.id, label: rt?.transport.label ?? (h.transport.kind === 'local' ? 'local' : h.transport.ssh.host), state: h.transport.kind === 'local' ? 'connected' : (rt?.state ?? 'disconnected'),
            ...(rt?.lastError ? { lastError: `${rt.lastError.message} [${rt.lastError.code}]` } : {}),
            ...(rt?.transport instanceof SshTransport ? { sessions: rt.transport.sessions } : {}),
            ...(facts ? { facts } : {}),
          };
        }),
        migrations: this.engine.list().map((m) => ({ id: m.id, vm: m.plan.vm, from: m.plan.from, to: m.plan.to, phase: m.phase, startedAt: m.startedAt, timeline: m.timeline })),
        pendingCleanups: this.cleanups.list(),
      });
      const file = logFile();
      return file ? { text, logFile: file } : { text };
    },
    'hosts:trust-key': async (req: { id: string; fingerprint: string }) => {
      const host = await this.registry.get(req.id);
      const rt = this.runtime(host);
      if (!(rt.transport instanceof SshTransport)) {
        throw new FerryException('INVALID_REQUEST', `host "${host.id}" is local: it has no host key`);
      }
      const key = rt.transport.presentedHostKeys.find((k) => k.fingerprint === req.fingerprint);
      if (!key) {
        throw new FerryException('INVALID_REQUEST', `host "${host.id}" did not present the key ${req.fingerprint} on the last connection attempt; connect again and confirm the fingerprint shown`, { id: host.id });
      }
      await appendKnownHost(this.knownHostsFile, formatKnownHostsLine(key.host, key.port, key.keyBlob, { hashed: true }));
      await this.connectHost(host);
      return this.info(host);
    },
    'migrations:start': async (req: MigrationPlan) => {
      const key = preflightKey(req);
      const seen = this.preflights.get(key);
      this.preflights.delete(key);
      const m = await this.engine.start(req, seen && Date.now() - seen.at < PREFLIGHT_KEPT_MS ? { preflight: seen.result } : {});
      return m.summary() as unknown as InvokeResponse<'migrations:start'>;
    },
    'migrations:control': async (req: { id: string; control: MigrationControl; who?: string }) => {
      await this.engine.get(req.id).control(req.control, req.who ?? 'user');
      return {};
    },
    'migrations:list': async () => this.engine.list() as unknown as InvokeResponse<'migrations:list'>,
    'migrations:history': async (req: { id: string }) => this.historyOf(req.id),
    'migrations:preflight': async (req: MigrationPlan) => {
      // A leftover destination QEMU of an earlier failure is stopped before it is checked for.
      // (Only over a live connection: a host being reconnected gets its cleanups when it is back.)
      const rtTo = this.runtimes.get(req.to);
      if (this.cleanups.list(req.to).length && rtTo?.transport.state === 'connected') await this.cleanups.runFor(req.to, rtTo.transport).catch(hostLog.dropped(`pending cleanups on ${req.to}`));
      const result = await this.engine.preflight(req);
      const now = Date.now();
      for (const [k, v] of this.preflights) if (now - v.at >= PREFLIGHT_KEPT_MS) this.preflights.delete(k);
      this.preflights.set(preflightKey(req), { at: now, result });
      return result;
    },
    'lab:demo': async (req: { bandwidthMBps?: number; workingSetMiB?: number; dirtyMiBps?: number; compare?: 'postcopy' | 'converge'; qemuB?: string }) => {
      if (this.demoRunning) throw new FerryException('ALREADY_EXISTS', 'the lab demo is already running');
      this.demoRunning = true;
      try {
        const notes: string[] = [];
        const runs = await runLabDemo({ root: this.labRoot, engine: this.engine, ...req, onNote: (t) => notes.push(t) });
        return { runs: runs.map((r) => ({ ...r, timeline: path.basename(r.timeline) })), ...(notes.length ? { notes } : {}) };
      } finally {
        this.demoRunning = false;
      }
    },
    'timelines:list': async () => listTimelines(this.timelineDir),
    'timelines:read': async (req: { name: string }) => ({ name: req.name, text: await readTimelineText(this.timelineDir, req.name) }),
    'lab:status': async () => {
      const st = await labStatus(this.labRoot);
      return { running: st.hosts.some((h) => h.vms.some((v) => v.runState !== 'stopped')), vms: st.hosts.reduce((a, h) => a + h.vms.length, 0), netns: st.netns !== undefined };
    },
    'lab:up': async (req: { accel?: 'auto' | 'kvm' | 'tcg'; qemuB?: string }) => {
      const r = await this.changingVms(() => labUp({ root: this.labRoot, ...(req.accel ? { accel: req.accel } : {}), ...(req.qemuB ? { qemuB: req.qemuB } : {}) }));
      if (r.vm) this.labStartedHere = true;
      return { bootMs: r.bootMs, started: r.vm !== undefined };
    },
    'lab:down': async () => this.changingVms(() => labDown({ root: this.labRoot })),
    'guest:command': async (req: { hostId: string; vm: string; command: string }) => {
      const transport = await this.transportOf(req.hostId);
      const con = await GuestConsole.open(transport, await this.guestSerialSocket(req.hostId, req.vm));
      try {
        const reply = await con.command(req.command, 20_000);
        return { reply: JSON.stringify(reply) };
      } finally {
        con.close();
      }
    },
    'evacuations:start': async (req: { from: string; to: string[]; parallel?: number; deadlineMs?: number; defaults?: Record<string, unknown> }) => {
      const evac = await startEvacuation(this.engine, this.engineHosts, req as EvacuationRequest);
      this.evacuations.set(evac.id, evac);
      evac.onProgress((summary) => this.emit('evacuation:progress', summary));
      return evac.summary();
    },
    'evacuations:list': async () => [...this.evacuations.values()].map((e) => e.summary()),
    'migrations:attach': async (req: { hostId: string; vm: string; qmpSocket?: string }) => {
      const m = await this.engine.attach(req);
      return m.summary() as unknown as InvokeResponse<'migrations:attach'>;
    },
    'states:list': async (req: { hostId: string }) => listStates(await this.registry.get(req.hostId), await this.transportOf(req.hostId)),
    'states:save': async (req: SaveRequest) => this.changingVms(async () => saveState(await this.registry.get(req.hostId), await this.transportOf(req.hostId), req, this.stateJobOptions)),
    'states:restore': async (req: RestoreRequest) => this.changingVms(async () => restoreState(await this.registry.get(req.hostId), await this.transportOf(req.hostId), req, this.stateJobOptions)),
    'vms:list': async (req: { hostId: string }) => {
      // Several tabs refresh at once: one listing per host at a time serves them all.
      // (Only one started since the last change Ferry made to a VM: an older one may be stale.)
      const key = `${req.hostId}\n${this.vmStates.generation}`;
      const inflight = this.vmListings.get(key);
      if (inflight) return inflight;
      const p = (async () => {
        const host = await this.registry.get(req.hostId);
        const rt = this.runtime(host);
        if (rt.state !== 'connected') await this.connectHost(host);
        return this.engine.listVms(host.id);
      })().finally(() => this.vmListings.delete(key));
      this.vmListings.set(key, p);
      return p;
    },
  };

  /**
   * A migration's history: from the engine's memory while this process knows it (a snapshot
   * taken synchronously, so every event sent before the reply is in it and every later one
   * is newer), else from its timeline file (a migration an earlier process ran).
   */
  private async historyOf(id: string): Promise<InvokeResponse<'migrations:history'>> {
    const m = this.engine.find(id);
    if (m) return { ...m.history(), source: 'memory' } as unknown as InvokeResponse<'migrations:history'>;
    const name = await this.timelineNameOf(id);
    const parsed = parseTimeline(await readTimelineText(this.timelineDir, name));
    if (parsed.header?.migrationId !== id) throw new FerryException('NOT_FOUND', `timeline ${name} is not that of migration "${id}"`, { id });
    const entry = entryFromTimeline(parsed);
    const summary = { ...entry.summary, timeline: path.join(this.timelineDir, name), ...(entry.final ? { final: entry.final } : {}) };
    const records = parsed.records.filter((r) => r.type !== 'sample' && r.type !== 'guest' && r.type !== 'header');
    return { summary, samples: parsed.samples, records, source: 'timeline' } as unknown as InvokeResponse<'migrations:history'>;
  }

  /** The file in the timeline directory that records migration `id`: its default name, else the one whose header names it. */
  private async timelineNameOf(id: string): Promise<string> {
    const own = `${id}.ferry.jsonl`;
    const files = await listTimelines(this.timelineDir);
    const hit = files.find((f) => f.name === own && f.migrationId === id) ?? files.find((f) => f.migrationId === id);
    if (!hit) throw new FerryException('NOT_FOUND', `no migration with id "${id}" (not running here, and no timeline of it in ${this.timelineDir})`, { id });
    return hit.name;
  }

  /** Runs something that starts, stops or pauses VMs: the cached run states are stale after it. */
  private async changingVms<T>(fn: () => Promise<T>): Promise<T> {
    try {
      return await fn();
    } finally {
      this.vmStates.clear();
    }
  }

  /** Where a VM's serial console is on its host: Ferry's runtime dir, or a libvirt domain's XML. */
  async guestSerialSocket(hostId: string, vm: string): Promise<string> {
    const host = await this.registry.get(hostId);
    if (!host.libvirt) return vmFiles(runtimeDirOf(host), vm).serialSocket;
    return this.libvirtSerial(host, await this.transportOf(hostId), vm);
  }

  /** A libvirt domain's serial console (the demo guest's), from its XML. */
  private async libvirtSerial(host: HostConfig, transport: HostTransport, name: string): Promise<string> {
    const conn = await this.libvirt.get(host, transport);
    const d = await requireDomain(conn, name);
    const sock = await serialSocketOf(conn, d.uuid);
    if (!sock) throw new FerryException('NOT_FOUND', `libvirt domain ${JSON.stringify(name)} on ${host.id} has no unix-socket serial console`);
    return sock;
  }

  /** The transport of a host (connected on demand by the callers that need it). */
  async transportOf(id: string): Promise<HostTransport> {
    const host = await this.registry.get(id);
    const rt = this.runtime(host);
    if (rt.state !== 'connected') await this.connectHost(host);
    return rt.transport;
  }

  private runtime(host: HostConfig, askPassphrase?: (keyPath: string) => Promise<string | undefined>): HostRuntime {
    const rt = this.runtimes.get(host.id);
    if (rt) return rt;
    const ssh = this.options.ssh ?? {};
    const transport: HostTransport = host.transport.kind === 'local'
      ? localTransportFor(host.transport, host.transport.mountNsPidFile ? `${host.id} (mount namespace)` : undefined)
      : new SshTransport(host.transport.ssh, {
          ...ssh,
          extraKnownHostsFiles: [...(ssh.extraKnownHostsFiles ?? []), this.knownHostsFile],
          // Asked only when a key is encrypted: the caller's passphrase, else a remembered one.
          askPassphrase: askPassphrase ?? (async (keyPath) => this.secrets.get(host.id) ?? (await ssh.askPassphrase?.(keyPath))),
        });
    const created: HostRuntime = {
      transport,
      state: transport.state === 'connected' ? 'connected' : 'disconnected',
      wanted: false,
      reconnectDelay: this.options.reconnectDelayMs ?? 1000,
      offState: () => {},
    };
    created.offState = transport.onStateChange((change) => {
      if (change.state === 'disconnected' && created.state === 'connected') {
        const error: FerryError = { code: 'SSH_DISCONNECTED', message: `${transport.label}: ${change.reason ?? 'disconnected'}` };
        this.setState(host.id, created, 'disconnected', error);
        this.scheduleReconnect(host, created);
      }
    });
    this.runtimes.set(host.id, created);
    return created;
  }

  private async connectHost(host: HostConfig, passphrase?: string): Promise<void> {
    const rt = this.runtime(host);
    if (passphrase !== undefined && rt.transport instanceof SshTransport) {
      // A fresh transport holding the passphrase in memory only (reconnects reuse it); never written.
      await this.drop(host.id);
      return this.connectRuntime(host, this.runtime(host, async () => passphrase));
    }
    return this.connectRuntime(host, rt);
  }

  private async connectRuntime(host: HostConfig, rt: HostRuntime): Promise<void> {
    rt.wanted = true;
    if (rt.reconnectTimer) clearTimeout(rt.reconnectTimer);
    rt.reconnectTimer = undefined;
    if (rt.transport.state === 'connected') {
      this.setState(host.id, rt, 'connected');
      this.onConnected(host, rt);
      return;
    }
    this.setState(host.id, rt, 'connecting');
    try {
      await rt.transport.connect();
      rt.reconnectDelay = this.options.reconnectDelayMs ?? 1000;
      rt.everConnected = true;
      this.setState(host.id, rt, 'connected');
      this.onConnected(host, rt);
    } catch (e) {
      const fe = toFerryError(e);
      this.setState(host.id, rt, 'failed', fe);
      // A host that was up and dropped keeps being retried, whoever's attempt just failed;
      // a refused key or login is not retried by itself (it needs the user).
      if (rt.everConnected && RETRIED.includes(fe.code)) this.scheduleReconnect(host, rt);
      throw e;
    }
  }

  /**
   * Each time a host is (re)connected: leftover destination QEMUs of failed migrations are
   * stopped, and (in a console or `ferry recover`) the migrations a previous Ferry process
   * started from this host are picked up and recorded to the end.
   */
  private onConnected(host: HostConfig, rt: HostRuntime): void {
    if (this.cleanups.list(host.id).length) void this.cleanups.runFor(host.id, rt.transport).then((vms) => vms.length && this.vmStates.clear(), hostLog.dropped(`pending cleanups on ${host.id}`));
    if (this.options.recoverOnConnect && !rt.recovered) {
      rt.recovered = true;
      const scan = this.engine.recover([host.id]).then((found) => {
        if (found.length) hostLog.info(`${host.id}: picked up ${found.length} migration(s) a previous Ferry started: ${found.map((m) => m.id).join(', ')}`);
        return found;
      }, (e: unknown) => {
        hostLog.warn(`recovering migrations on ${host.id}: ${toFerryError(e).message}`);
        return [] as Migration[];
      });
      this.recoveries.push(scan);
    }
  }

  private readonly recoveries: Promise<Migration[]>[] = [];

  /** The migrations picked up so far by `recoverOnConnect` (waits for scans in flight). */
  async recovered(): Promise<Migration[]> {
    return (await Promise.all(this.recoveries)).flat();
  }

  /**
   * What a long-lived console does when it starts: connect every configured host (a host
   * that needs the user — a passphrase, a new host key — shows why on the board), which also
   * picks up migrations still running from a previous Ferry. Resolves when every attempt ended.
   */
  async connectAll(): Promise<void> {
    const hosts = await this.registry.list();
    await Promise.all(hosts.map((h) => this.connectHost(h).catch(hostLog.dropped(`connecting ${h.id} at start`, 'info'))));
  }

  private scheduleReconnect(host: HostConfig, rt: HostRuntime): void {
    const base = this.options.reconnectDelayMs ?? 1000;
    if (!rt.wanted || base <= 0 || this.disposed || rt.reconnectTimer) return;
    const delay = rt.reconnectDelay;
    rt.reconnectDelay = Math.min(delay * 2, 30_000);
    rt.reconnectTimer = setTimeout(() => {
      rt.reconnectTimer = undefined;
      if (this.disposed || this.runtimes.get(host.id) !== rt) return;
      hostLog.info(`reconnecting to ${host.id} (${rt.transport.label}) after ${delay} ms`);
      // The failure itself is logged by setState('failed'); the next attempt waits longer.
      this.connectRuntime(host, rt).catch(() => this.scheduleReconnect(host, rt));
    }, delay);
    rt.reconnectTimer.unref?.();
  }

  private setState(id: string, rt: HostRuntime, state: HostConnectionState, error?: FerryError): void {
    if (rt.state !== state || error) {
      const line = `${rt.transport.label}: ${rt.state} -> ${state}${error ? `: ${error.message} [${error.code}]` : ''}`;
      if (state === 'failed' || (state === 'disconnected' && error)) hostLog.warn(line, { host: id });
      else hostLog.info(line, { host: id });
    }
    rt.state = state;
    if (state === 'connected') delete rt.lastError;
    if (error) rt.lastError = error;
    this.emit('hosts:state', error ? { hostId: id, state, error, reason: error.message } : { hostId: id, state });
  }

  private async info(host: HostConfig): Promise<HostInfo> {
    const rt = this.runtimes.get(host.id);
    const state: HostConnectionState = host.transport.kind === 'local' ? 'connected' : (rt?.state ?? 'disconnected');
    const label = rt?.transport.label ?? (host.transport.kind === 'local' ? 'local' : host.transport.ssh.host);
    const info: HostInfo = rt?.lastError ? { config: host, state, label, lastError: rt.lastError } : { config: host, state, label };
    if (state === 'connected') {
      const facts: NonNullable<HostInfo['facts']> = await this.factsOf(host).catch((e: unknown) => ({ unavailable: toFerryError(e).message }));
      // Learned here, not read from the host: always current, never cached with the host's facts.
      const learned = this.switchovers.summaries().filter((x) => x.from === host.id).map(({ from: _from, ...rest }) => rest);
      info.facts = learned.length ? { ...facts, switchovers: learned } : facts;
    }
    return info;
  }

  /** QMP run states of listed VMs (cleared when a migration changes one). */
  private readonly vmStates = new VmStateCache();
  private readonly vmListings = new Map<string, Promise<InvokeResponse<'vms:list'>>>();
  /** Per host: its facts, when its software was last read (`softwareAt`) and when its memory was (`at`). */
  private readonly factCache = new Map<string, { binary: string; at: number; softwareAt: number; facts: NonNullable<HostInfo['facts']> }>();

  /**
   * QEMU version and newer features (its schema), KVM and libvirt's version, kept for a
   * minute: software changes when someone installs it, not between two board refreshes, and
   * asking spawns processes (each a fork of this whole process on a local host: with 20
   * hosts refreshed every 5 s that was most of the console's idle CPU). Available memory,
   * which moves as VMs start and stop, is read again after 10 s. A fact the host could not be
   * asked for (busy, dropped) is never guessed: the last known one stays, `unavailable` says
   * why the rest is missing, and nothing is kept, so the next refresh asks again.
   */
  private async factsOf(host: HostConfig): Promise<NonNullable<HostInfo['facts']>> {
    const qemu = qemuOf(host);
    const hit = this.factCache.get(host.id);
    const known = hit?.binary === qemu.binary ? hit : undefined;
    const now = Date.now();
    if (known && now - known.at < MEMORY_FACT_MS) return known.facts;
    const t = await this.transportOf(host.id);
    const failures: string[] = [];
    const softwareFresh = known !== undefined && now - known.softwareAt < SOFTWARE_FACTS_MS;
    const [software, mem] = await Promise.all([
      softwareFresh ? pickSoftwareFacts(known.facts) : this.softwareFactsOf(host, t, qemu, known?.facts, failures),
      t.readFile('/proc/meminfo').then((b) => b.toString(), (e: unknown) => {
        failures.push(toFerryError(e).message);
        return undefined;
      }),
    ]);
    const facts: NonNullable<HostInfo['facts']> = { qemuBinary: qemu.binary, ...software };
    const avail = mem === undefined ? undefined : /MemAvailable:\s+(\d+)/.exec(mem)?.[1];
    if (avail) facts.memAvailableMiB = Math.round(Number(avail) / 1024);
    else if (mem === undefined && known?.facts.memAvailableMiB !== undefined) facts.memAvailableMiB = known.facts.memAvailableMiB;
    if (failures.length) {
      facts.unavailable = failures[0]!;
      hostLog.warn(`${host.id}: facts not read: ${[...new Set(failures)].join('; ')}`);
      return facts; // not kept: asked again on the next refresh
    }
    this.factCache.set(host.id, { binary: qemu.binary, at: now, softwareAt: softwareFresh ? known.softwareAt : now, facts });
    return facts;
  }

  /** What runs on the host: QEMU's version and features, KVM, libvirt's version. A fact it could not be asked for keeps its last known value and adds to `failures`. */
  private async softwareFactsOf(host: HostConfig, t: HostTransport, qemu: QemuInstall, known: NonNullable<HostInfo['facts']> | undefined, failures: string[]): Promise<NonNullable<HostInfo['facts']>> {
    const facts: NonNullable<HostInfo['facts']> = {};
    try {
      const { line, kvm } = await qemuVersionAndKvm(t, qemu); // throws when the host could not be asked
      facts.kvm = kvm;
      const version = parseQemuVersion(line);
      if (version) {
        const probe = await probeQemu(t, qemu, line).catch((e: unknown) => {
          hostLog.warn(`${host.id}: ${toFerryError(e).message}`, { host: host.id });
          return undefined;
        });
        facts.qemuVersion = probe?.version ?? version.join('.');
        if (probe) facts.qemuFeatures = optionalFeatures(probe.features);
      }
    } catch (e) {
      failures.push(toFerryError(e).message);
      if (known?.qemuVersion) facts.qemuVersion = known.qemuVersion;
      if (known?.qemuFeatures) facts.qemuFeatures = known.qemuFeatures;
      if (known?.kvm !== undefined) facts.kvm = known.kvm;
    }
    if (host.libvirt) {
      const lv = await this.libvirt.get(host, t).then((c) => c.run(['version', '--daemon'])).then(parseVersion).catch(hostLog.dropped(`libvirt's version on ${host.id}`, 'debug'));
      const version = lv?.daemon ?? lv?.library;
      if (version) facts.libvirtVersion = version;
    }
    return facts;
  }

  private async drop(id: string): Promise<void> {
    await this.libvirt.drop(id);
    const rt = this.runtimes.get(id);
    if (!rt) return;
    rt.wanted = false;
    if (rt.reconnectTimer) clearTimeout(rt.reconnectTimer);
    rt.offState();
    this.runtimes.delete(id);
    await rt.transport.close();
  }

  /** Answers `ferry control` / `ferry migrations` from other shells (see control-server.ts). */
  async listenForControl(describe: string): Promise<void> {
    if (this.control) return;
    this.control = await startControlServer(this.configDir, (channel, request) => this.invoke(channel, request), describe);
  }

  private control: ControlServer | undefined;

  async dispose(): Promise<void> {
    this.disposed = true;
    await this.control?.close().catch(hostLog.dropped('closing the control socket'));
    await this.engine.dispose();
    await Promise.all([...this.runtimes.keys()].map((id) => this.drop(id)));
    await this.libvirt.closeAll();
    this.listeners.clear();
  }
}
