/**
 * The SSH host transport (ssh2). Honours ~/.ssh/config (Host patterns, HostName, User, Port,
 * IdentityFile, ProxyJump), SSH_AUTH_SOCK, encrypted keys (passphrase asked through a
 * callback, held only for the parse), and known_hosts; the host key check is a pure function
 * that fails closed. The TCP socket is ours, with Nagle off: ssh2's own socket measured a
 * 44 ms stall per QMP round trip here (../shared/LAB-NOTES.md).
 */
import ssh2 from 'ssh2';
import type { AcceptConnection, Client, ClientChannel, ConnectConfig, ParsedKey, SFTPWrapper, AnyAuthMethod, AuthenticationType, UNIXConnectionDetails } from 'ssh2';
import { connect as netConnect } from 'node:net';
import type { Socket } from 'node:net';
import { Duplex } from 'node:stream';
import type { Readable } from 'node:stream';
import { existsSync, readFileSync } from 'node:fs';
import { homedir, userInfo } from 'node:os';
import { randomBytes } from 'node:crypto';
import path from 'node:path';
import { FerryException } from '../../../shared/errors';
import type { ExecOptions, ExecResult, HostTransport, SpawnedProcess, TransportState, TransportStateChange, UnixListener } from './host-transport';
import { quoteArgv } from './shell-quote';
import { loadSshConfig, resolveSshHost, parseJumpSpec } from './ssh-config';
import type { JumpSpec, ResolvedSshHost } from './ssh-config';
import { checkHostKey, loadKnownHosts } from './known-hosts';
import type { HostKeyVerdict } from './known-hosts';
import { ChannelBudget, DEFAULT_MAX_SESSIONS } from './channel-budget';
import { rootLog } from '../log';
import type { Logger } from '../log';

export interface SshTarget {
  /** An ssh_config alias, a host name or an address. */
  host: string;
  /** Explicit settings win over ~/.ssh/config. */
  user?: string;
  port?: number;
  identityFile?: string;
  /** `[user@]host[:port]`, comma-separated for several hops. */
  proxyJump?: string;
  /** Session channels held at once (default 8, below OpenSSH's MaxSessions 10). */
  maxSessions?: number;
}

export interface SshTransportOptions {
  /** Home directory for `~` (default: the OS user's). */
  homeDir?: string;
  /** Default `~/.ssh/config`; `null` to ignore every config file. */
  sshConfigPath?: string | null;
  /** Files checked for host keys besides the config's UserKnownHostsFile list (e.g. Ferry's own). */
  extraKnownHostsFiles?: string[];
  /** Agent socket; default `SSH_AUTH_SOCK`; `false` to not use an agent. */
  agent?: string | false;
  /** Asked for a key's passphrase; return undefined to skip the key. Never stored. */
  askPassphrase?: (keyPath: string) => Promise<string | undefined>;
  keepaliveIntervalMs?: number;
  keepaliveCountMax?: number;
  readyTimeoutMs?: number;
  /** Use `socat` through exec when the server refuses streamlocal forwarding. Default true. */
  socatFallback?: boolean;
}

export interface PresentedHostKey {
  host: string;
  port: number;
  keyBlob: Buffer;
  fingerprint: string;
}

// ssh2 is CommonJS: Node's ESM loader cannot see its named exports.
const { Client: SshClient, utils: sshUtils } = ssh2;

interface Hop {
  spec: ResolvedSshHost;
  client: Client;
}

export class SshTransport implements HostTransport {
  readonly kind = 'ssh' as const;
  private hops: Hop[] = [];
  private _state: TransportState = 'disconnected';
  private readonly stateListeners = new Set<(c: TransportStateChange) => void>();
  private readonly openStreams = new Set<Duplex | ClientChannel>();
  private streamLocalRefused = false;
  private sftpPromise: Promise<SFTPWrapper> | undefined;
  private resolved: ResolvedSshHost | undefined;
  private connecting: Promise<void> | undefined;
  private presented: PresentedHostKey[] = [];
  /** Bumped by close(): a connect started under an older generation is abandoned. */
  private connectGen = 0;
  /** Session channels of the current connection (a new budget per connection). */
  private budget: ChannelBudget;
  private log: Logger;

  constructor(readonly target: SshTarget, private readonly options: SshTransportOptions = {}) {
    this.budget = new ChannelBudget(target.maxSessions ?? DEFAULT_MAX_SESSIONS, target.host);
    this.log = rootLog.child(`ssh ${target.host}`);
  }

  /** Session channels: held now, the most held at once, refusals seen, the limit in force. */
  get sessions(): { held: number; peak: number; queued: number; refusals: number; limit: number } {
    const b = this.budget;
    return { held: b.held, peak: b.peak, queued: b.queued, refusals: b.refusals, limit: b.effectiveLimit };
  }

  get label(): string {
    const r = this.resolved;
    return r ? `${r.user}@${r.hostName}:${r.port}` : this.target.host;
  }

  /** Host keys seen during the last connect attempt (every hop), for trust-on-confirmation. */
  get presentedHostKeys(): readonly PresentedHostKey[] {
    return this.presented;
  }

  get state(): TransportState {
    return this._state;
  }

  /** The settings in force after ~/.ssh/config and the explicit overrides. */
  resolve(): ResolvedSshHost {
    const base = this.resolveName(this.target.host);
    const r: ResolvedSshHost = { ...base };
    if (this.target.user) r.user = this.target.user;
    if (this.target.port) r.port = this.target.port;
    if (this.target.identityFile) r.identityFiles = [expandHome(this.target.identityFile, this.home)];
    if (this.target.proxyJump) {
      r.proxyJump = this.target.proxyJump.toLowerCase() === 'none' ? [] : this.target.proxyJump.split(',').map((s) => parseJumpSpec(s.trim()));
    }
    return r;
  }

  private get home(): string {
    return this.options.homeDir ?? homedir();
  }

  private resolveName(alias: string): ResolvedSshHost {
    const configPath = this.options.sshConfigPath === undefined ? path.join(this.home, '.ssh', 'config') : this.options.sshConfigPath;
    const config = configPath === null ? { source: 'none', items: [] } : loadSshConfig(configPath, this.home);
    return resolveSshHost(config, alias, { homeDir: this.home, localUser: safeUser(), env: process.env });
  }

  connect(): Promise<void> {
    if (this._state === 'connected') return Promise.resolve();
    if (!this.connecting) {
      this.connecting = this.doConnect().finally(() => {
        this.connecting = undefined;
      });
    }
    return this.connecting;
  }

  private async doConnect(): Promise<void> {
    const target = this.resolve();
    this.resolved = target;
    this.presented = [];
    if (target.proxyCommand) {
      throw new FerryException('SSH_CONFIG_INVALID', `${target.alias}: ProxyCommand is not supported; use ProxyJump`, { host: target.alias });
    }
    this.setState('connecting');
    const gen = ++this.connectGen;
    const hops: Hop[] = [];
    let first: Socket | undefined;
    // An error on a hop before the connection is complete fails the connect (below), never the process.
    const early = (e: Error) => this.log.debug(`hop error while connecting: ${e.message}`);
    try {
      // Jump hosts are resolved through ~/.ssh/config too, as OpenSSH does.
      const chain: ResolvedSshHost[] = target.proxyJump.map((j) => this.resolveJump(j));
      chain.push(target);
      let sock: Readable | undefined;
      for (const spec of chain) {
        if (sock === undefined) sock = first = await tcpConnect(spec.hostName, spec.port, this.options.readyTimeoutMs ?? 15_000);
        this.checkNotAbandoned(gen);
        const client = await this.handshake(spec, sock);
        client.on('error', early);
        hops.push({ spec, client });
        await this.startFirstSession(client, spec.hostName);
        this.checkNotAbandoned(gen);
        const next = chain[hops.length];
        if (next) sock = await forwardOut(client, next.hostName, next.port, this.options.readyTimeoutMs ?? 15_000, 'SSH_CONNECT_FAILED', ` through jump host ${spec.hostName}`);
      }
    } catch (e) {
      // Nothing of a failed connect may keep the process alive: every hop and our own socket go.
      for (const h of hops.reverse()) h.client.end();
      first?.destroy();
      this.log.warn(`connect failed: ${e instanceof Error ? e.message : String(e)}`);
      if (gen === this.connectGen) this.setState('disconnected', e instanceof Error ? e.message : String(e));
      throw e;
    }
    for (const h of hops) h.client.off('error', early);
    this.hops = hops;
    this.streamLocalRefused = false;
    this.sftpPromise = undefined;
    this.budget = new ChannelBudget(this.target.maxSessions ?? DEFAULT_MAX_SESSIONS, this.label);
    this.log = rootLog.child(`ssh ${this.label}`);
    this.log.info(`connected${target.proxyJump.length ? ` through ${target.proxyJump.map((j) => j.host).join(', ')}` : ''}`);
    const last = hops[hops.length - 1]!.client;
    let gone = false;
    const onGone = (reason: string) => {
      if (gone) return;
      gone = true;
      this.onDisconnected(reason);
    };
    for (const h of hops) {
      h.client.on('error', (e: Error) => onGone(`${h.spec.hostName}: ${e.message}`));
      h.client.on('close', () => onGone(h.client === last ? 'connection closed' : `jump host ${h.spec.hostName} closed`));
    }
    this.setState('connected');
  }

  /**
   * Runs `true` once on a new connection, so that sshd turns Nagle's algorithm off on it.
   * OpenSSH sets TCP_NODELAY on its socket when the connection's first session starts
   * (ssh_packet_set_interactive), and never on one that only forwards. Ferry's QMP and
   * libvirt tunnels are forwards: without a session, a reply sshd sends right after a packet
   * of its own (a window adjust, every ~100 KB of requests) waited for Ferry's delayed ACK,
   * 40 ms (bench qmp: a 42 ms round trip in every run of 2000, none after this). A host or
   * jump host that refuses sessions still connects; that is logged.
   */
  private async startFirstSession(client: Client, host: string): Promise<void> {
    const outcome = await new Promise<string | undefined>((resolve) => {
      const timer = setTimeout(() => resolve('no answer within 5 s'), 5_000);
      client.exec('true', (e, ch) => {
        if (e) {
          clearTimeout(timer);
          resolve(e.message);
          return;
        }
        ch.resume();
        ch.stderr.resume();
        ch.once('close', () => {
          clearTimeout(timer);
          resolve(undefined);
        });
      });
    });
    if (outcome !== undefined) this.log.debug(`${host}: the first session (which turns Nagle off in sshd) did not run: ${outcome}`);
  }

  /** close() during a connect abandons it: the half-made connection is torn down, not kept. */
  private checkNotAbandoned(gen: number): void {
    if (gen !== this.connectGen) throw new FerryException('TRANSPORT_CLOSED', `${this.target.host}: connection closed by Ferry while connecting`, { host: this.target.host });
  }

  private resolveJump(j: JumpSpec): ResolvedSshHost {
    const r = this.resolveName(j.host);
    if (j.user) r.user = j.user;
    if (j.port) r.port = j.port;
    // A jump host's own ProxyJump is ignored: the chain is the target's.
    r.proxyJump = [];
    return r;
  }

  private async handshake(spec: ResolvedSshHost, sock: Readable): Promise<Client> {
    const knownHosts = await loadKnownHosts([...spec.userKnownHostsFiles, ...(this.options.extraKnownHostsFiles ?? [])]);
    let verdict: HostKeyVerdict | undefined;
    const keys = await this.loadKeys(spec);
    const agent = this.options.agent === false ? undefined : (this.options.agent ?? process.env.SSH_AUTH_SOCK);
    const methods: AnyAuthMethod[] = [];
    if (agent && !spec.identitiesOnly) methods.push({ type: 'agent', username: spec.user, agent });
    for (const k of keys.parsed) methods.push({ type: 'publickey', username: spec.user, key: k });
    if (agent && spec.identitiesOnly) methods.push({ type: 'agent', username: spec.user, agent });

    const client = new SshClient();
    const config: ConnectConfig = {
      sock,
      username: spec.user,
      readyTimeout: this.options.readyTimeoutMs ?? 15_000,
      keepaliveInterval: this.options.keepaliveIntervalMs ?? (spec.serverAliveInterval ? spec.serverAliveInterval * 1000 : 5_000),
      keepaliveCountMax: this.options.keepaliveCountMax ?? 3,
      hostVerifier: (key: Buffer) => {
        verdict = checkHostKey(knownHosts, spec.hostName, spec.port, key);
        this.presented.push({ host: spec.hostName, port: spec.port, keyBlob: Buffer.from(key), fingerprint: verdict.fingerprint });
        return verdict.status === 'trusted';
      },
      authHandler: (_left: AuthenticationType[], _partial: boolean, next: (m: AnyAuthMethod | false) => void) => {
        next(methods.shift() ?? false);
      },
    } as ConnectConfig;
    return new Promise<Client>((resolve, reject) => {
      client.once('ready', () => {
        client.removeAllListeners('error');
        resolve(client);
      });
      client.once('error', (e: Error & { level?: string }) => {
        client.end();
        const where = `${spec.user}@${spec.hostName}:${spec.port}`;
        if (verdict && verdict.status !== 'trusted') {
          reject(hostKeyError(verdict, spec));
        } else if (e.level === 'client-authentication') {
          if (keys.needPassphrase.length > 0) {
            reject(new FerryException('SSH_PASSPHRASE_REQUIRED', `${where}: authentication failed; key ${keys.needPassphrase.join(', ')} needs a passphrase`, { host: spec.hostName, keys: keys.needPassphrase }));
          } else {
            reject(new FerryException('SSH_AUTH_FAILED', `${where}: no key was accepted (tried ${keys.tried.length ? keys.tried.join(', ') : 'no key files'}${agent ? ' and the agent' : ''})`, { host: spec.hostName, user: spec.user }));
          }
        } else {
          reject(new FerryException('SSH_CONNECT_FAILED', `${where}: ${e.message}`, { host: spec.hostName, port: spec.port }));
        }
      });
      client.connect(config);
    });
  }

  private async loadKeys(spec: ResolvedSshHost): Promise<{ parsed: ParsedKey[]; tried: string[]; needPassphrase: string[] }> {
    const parsed: ParsedKey[] = [];
    const tried: string[] = [];
    const needPassphrase: string[] = [];
    for (const file of spec.identityFiles) {
      if (!existsSync(file)) continue;
      tried.push(file);
      let data: Buffer;
      try {
        data = readFileSync(file);
      } catch (e) {
        throw new FerryException('IO_ERROR', `cannot read key ${file}: ${(e as Error).message}`, { path: file });
      }
      let key = sshUtils.parseKey(data);
      if (key instanceof Error && /passphrase/i.test(key.message)) {
        const pass = this.options.askPassphrase ? await this.options.askPassphrase(file) : undefined;
        if (pass === undefined) {
          needPassphrase.push(file);
          continue;
        }
        key = sshUtils.parseKey(data, pass);
        if (key instanceof Error) {
          throw new FerryException('SSH_PASSPHRASE_REQUIRED', `wrong passphrase for ${file}`, { keys: [file], wrong: true });
        }
      }
      if (key instanceof Error) continue; // not a key ssh2 understands; OpenSSH would skip it too
      parsed.push(...(Array.isArray(key) ? key : [key]));
    }
    return { parsed, tried, needPassphrase };
  }

  private onDisconnected(reason: string): void {
    if (this._state === 'disconnected') return;
    for (const h of this.hops) h.client.end();
    this.hops = [];
    this.sftpPromise = undefined;
    const error = new FerryException('SSH_DISCONNECTED', `${this.label}: ${reason}`, { host: this.label });
    this.log.info(`disconnected: ${reason} (session channels: peak ${this.budget.peak}, ${this.budget.refusals} refused)`);
    this.budget.drain(error);
    for (const s of this.openStreams) endWithError(s as Duplex, error);
    this.openStreams.clear();
    this.setState('disconnected', reason);
  }

  async close(): Promise<void> {
    this.connectGen++; // abandons a connect in flight
    const connecting = this.connecting;
    if (connecting) {
      this.setState('disconnected', 'closed by Ferry');
      // Settles quickly: the connect sees it was abandoned at its next step and tears down.
      await Promise.race([connecting.catch(this.log.dropped('the connect abandoned by close()', 'debug')), new Promise((r) => setTimeout(r, 2000).unref())]);
    }
    if (this._state === 'disconnected' && this.hops.length === 0) return;
    const closed = this.hops.length ? new Promise<void>((r) => this.hops[this.hops.length - 1]!.client.once('close', () => r())) : Promise.resolve();
    this.onDisconnected('closed by Ferry');
    await Promise.race([closed, new Promise((r) => setTimeout(r, 1000))]);
  }

  onStateChange(listener: (change: TransportStateChange) => void): () => void {
    this.stateListeners.add(listener);
    return () => {
      this.stateListeners.delete(listener);
    };
  }

  private setState(state: TransportState, reason?: string): void {
    if (this._state === state) return;
    this._state = state;
    const change: TransportStateChange = reason === undefined ? { state } : { state, reason };
    for (const l of [...this.stateListeners]) l(change);
  }

  private client(): Client {
    const hop = this.hops[this.hops.length - 1];
    if (!hop || this._state !== 'connected') {
      throw new FerryException('TRANSPORT_CLOSED', `${this.label}: not connected`, { host: this.label });
    }
    return hop.client;
  }

  private track<T extends Duplex | ClientChannel>(s: T): T {
    this.openStreams.add(s);
    s.once('close', () => this.openStreams.delete(s));
    return s;
  }

  /**
   * Opens a session channel (exec or a subsystem) within the connection's budget: waits for a
   * free slot, and when the server refuses one anyway, lowers the budget and retries as soon
   * as another channel frees. The slot is freed when the channel closes.
   */
  private async openSession<T extends { once(event: 'close', l: () => void): unknown }>(what: string, open: (client: Client, cb: (e: Error | undefined, ch: T) => void) => void): Promise<T> {
    const deadline = Date.now() + 60_000;
    for (;;) {
      const release = await this.budget.acquire(what, Math.max(1, deadline - Date.now()));
      let ch: T;
      try {
        const client = this.client();
        ch = await new Promise<T>((resolve, reject) => open(client, (e, c) => (e ? reject(e) : resolve(c))));
      } catch (e) {
        release();
        const refused = e instanceof Error && /Channel open failure/i.test(e.message);
        if (!refused || this._state !== 'connected') throw e;
        const others = this.budget.held;
        if (!this.budget.refused(others) || Date.now() >= deadline) {
          this.log.warn(`${what}: session channel refused with ${others} others open (${e.message})`);
          if (others > 0) throw this.budget.busy(what, 60_000);
          throw e;
        }
        this.log.warn(`${what}: session channel refused with ${others} others open; limit lowered to ${this.budget.effectiveLimit}, retrying when one frees`);
        continue;
      }
      ch.once('close', release);
      return ch;
    }
  }

  private async openExec(command: string): Promise<ClientChannel> {
    try {
      const ch = await this.openSession<ClientChannel>(`exec ${command.split(' ', 1)[0]}`, (client, cb) => {
        client.exec(command, (e, c) => cb(e, c));
      });
      return this.track(ch);
    } catch (e) {
      if (e instanceof FerryException) throw e;
      throw new FerryException('EXEC_FAILED', `${this.label}: exec refused: ${(e as Error).message}`, { host: this.label });
    }
  }

  async exec(argv: readonly string[], options: ExecOptions = {}): Promise<ExecResult> {
    const r = await this.execRaw(argv, options);
    return { ...r, stdout: r.stdout.toString('utf8'), stderr: r.stderr.toString('utf8') };
  }

  private async execRaw(argv: readonly string[], options: ExecOptions = {}): Promise<{ code: number | null; signal: string | null; stdout: Buffer; stderr: Buffer }> {
    const ch = await this.openExec(quoteArgv(argv));
    return new Promise((resolve, reject) => {
      const out: Buffer[] = [];
      const errOut: Buffer[] = [];
      let code: number | null = null;
      let signal: string | null = null;
      let timer: NodeJS.Timeout | undefined;
      if (options.timeoutMs) {
        timer = setTimeout(() => {
          ch.close();
          reject(new FerryException('EXEC_FAILED', `${argv[0]} on ${this.label} timed out after ${options.timeoutMs} ms`, { argv0: argv[0] }));
        }, options.timeoutMs);
      }
      ch.on('data', (c: Buffer) => out.push(c));
      ch.stderr.on('data', (c: Buffer) => errOut.push(c));
      ch.on('exit', (c: number | null, sig?: string) => {
        code = c ?? null;
        signal = sig ?? null;
      });
      ch.on('error', (e: Error) => {
        if (timer) clearTimeout(timer);
        reject(e instanceof FerryException ? e : new FerryException('EXEC_FAILED', `${argv[0]} on ${this.label}: ${e.message}`));
      });
      ch.on('close', () => {
        if (timer) clearTimeout(timer);
        resolve({ code, signal, stdout: Buffer.concat(out), stderr: Buffer.concat(errOut) });
      });
      ch.end(options.stdin ?? undefined);
    });
  }

  async spawn(argv: readonly string[]): Promise<SpawnedProcess> {
    const ch = await this.openExec(quoteArgv(argv));
    const exited = new Promise<{ code: number | null; signal: string | null }>((resolve) => {
      let code: number | null = null;
      let signal: string | null = null;
      ch.on('exit', (c: number | null, sig?: string) => {
        code = c ?? null;
        signal = sig ?? null;
      });
      ch.on('close', () => resolve({ code, signal }));
      ch.on('error', this.log.dropped(`spawned ${argv[0]}`, 'debug')); // its end arrives as 'close' all the same
    });
    return {
      stdin: ch,
      stdout: ch,
      stderr: ch.stderr,
      exited,
      kill: (sig = 'SIGTERM') => {
        try {
          ch.signal(sig.replace(/^SIG/, ''));
        } catch {
          // the channel is already closed: there is nothing left to signal (closed below anyway)
        }
        ch.close();
      },
    };
  }

  async openUnix(socketPath: string): Promise<Duplex> {
    if (!this.streamLocalRefused) {
      try {
        return await this.openStreamLocal(socketPath);
      } catch (e) {
        if (!(e instanceof FerryException && e.code === 'SSH_CHANNEL_REFUSED') || this.options.socatFallback === false) throw e;
        this.streamLocalRefused = true;
      }
    }
    return this.openUnixViaSocat(socketPath);
  }

  private openStreamLocal(socketPath: string): Promise<Duplex> {
    const client = this.client();
    return new Promise<Duplex>((resolve, reject) => {
      client.openssh_forwardOutStreamLocal(socketPath, (e, ch) => (e ? reject(e) : resolve(this.track(ch))));
    }).catch(async (e: Error) => {
      // OpenSSH answers "open failed" both when streamlocal is disabled and when nothing
      // listens at the path: look at the path to tell the two apart.
      const check = await this.exec(['test', '-S', socketPath]);
      if (check.code !== 0) {
        throw new FerryException('NOT_FOUND', `${this.label}: no unix socket at ${socketPath}`, { path: socketPath });
      }
      throw new FerryException('SSH_CHANNEL_REFUSED', `${this.label}: streamlocal forwarding to ${socketPath} refused: ${e.message}`, { path: socketPath });
    });
  }

  private async openUnixViaSocat(socketPath: string): Promise<Duplex> {
    // One round trip to give a clear error instead of a stream that just ends.
    const check = await this.exec(['test', '-S', socketPath]);
    if (check.code !== 0) {
      throw new FerryException('NOT_FOUND', `${this.label}: no unix socket at ${socketPath}`, { path: socketPath });
    }
    const ch = await this.openExec(quoteArgv(['socat', '-', `UNIX-CONNECT:${socketPath}`]));
    let stderr = '';
    ch.stderr.on('data', (c: Buffer) => {
      stderr += c.toString();
    });
    ch.on('exit', (code: number | null) => {
      if (code !== 0 && code !== null) {
        endWithError(ch as unknown as Duplex, new FerryException(/not found/i.test(stderr) ? 'EXEC_FAILED' : 'IO_ERROR', `${this.label}: socat to ${socketPath} failed (${code}): ${stderr.trim()}`, { path: socketPath }));
      }
    });
    return ch;
  }

  async listenUnix(socketPath: string, onConnection: (stream: Duplex) => void): Promise<UnixListener> {
    const client = this.client();
    // sshd refuses to bind over a stale socket unless StreamLocalBindUnlink is set.
    await this.exec(['rm', '-f', '--', socketPath]);
    const handler = (info: UNIXConnectionDetails, accept: AcceptConnection) => {
      if (info.socketPath === socketPath) onConnection(this.track(accept()));
    };
    client.on('unix connection', handler);
    try {
      await new Promise<void>((resolve, reject) => {
        client.openssh_forwardInStreamLocal(socketPath, (e) => (e ? reject(e) : resolve()));
      });
    } catch (e) {
      client.off('unix connection', handler);
      throw new FerryException('SSH_CHANNEL_REFUSED', `${this.label}: sshd refused to listen on ${socketPath} for Ferry (${(e as Error).message}); it needs AllowStreamLocalForwarding yes`, { path: socketPath });
    }
    return {
      path: socketPath,
      close: async () => {
        client.off('unix connection', handler);
        if (this._state !== 'connected') return;
        await new Promise<void>((resolve) => client.openssh_unforwardInStreamLocal(socketPath, () => resolve()));
        await this.exec(['rm', '-f', '--', socketPath]).catch(this.log.dropped(`removing ${socketPath}`));
      },
    };
  }

  openTcp(host: string, port: number): Promise<Duplex> {
    const client = this.client();
    return forwardOut(client, host, port).then((ch) => this.track(ch));
  }

  private sftp(): Promise<SFTPWrapper> {
    if (!this.sftpPromise) {
      // The sftp subsystem is a session channel too: it holds one slot while it is open.
      this.sftpPromise = this.openSession<SFTPWrapper>('sftp', (client, cb) => client.sftp((e, sftp) => cb(e, sftp)));
      const p = this.sftpPromise;
      p.then((sftp) => sftp.once('close', () => {
        if (this.sftpPromise === p) this.sftpPromise = undefined;
      }), () => {
        if (this.sftpPromise === p) this.sftpPromise = undefined;
      });
    }
    return this.sftpPromise;
  }

  async readFile(filePath: string): Promise<Buffer> {
    let sftp: SFTPWrapper | undefined;
    try {
      sftp = await this.sftp();
    } catch {
      // No sftp subsystem: fall back to cat.
      const r = await this.execRaw(['cat', '--', filePath]);
      if (r.code !== 0) throw new FerryException(/No such file/.test(r.stderr.toString()) ? 'NOT_FOUND' : 'IO_ERROR', `${this.label}: cannot read ${filePath}: ${r.stderr.toString().trim()}`, { path: filePath });
      return r.stdout;
    }
    return new Promise((resolve, reject) => {
      sftp.readFile(filePath, (e: Error | null | undefined, data: Buffer) => {
        if (e) {
          const code = (e as Error & { code?: number }).code === 2 ? 'NOT_FOUND' : 'IO_ERROR';
          reject(new FerryException(code, `${this.label}: cannot read ${filePath}: ${e.message}`, { path: filePath }));
        } else resolve(data);
      });
    });
  }

  async writeFile(filePath: string, data: string | Uint8Array, mode = 0o644): Promise<void> {
    const tmp = `${path.posix.dirname(filePath)}/.${path.posix.basename(filePath)}.${randomBytes(6).toString('hex')}.tmp`;
    const fail = (e: Error) => new FerryException('IO_ERROR', `${this.label}: cannot write ${filePath}: ${e.message}`, { path: filePath });
    let sftp: SFTPWrapper | undefined;
    try {
      sftp = await this.sftp();
    } catch {
      sftp = undefined;
    }
    if (!sftp) {
      const r = await this.execRaw(['sh', '-c', 'umask 022 && cat > "$1" && chmod "$3" "$1" && mv -f -- "$1" "$2"', 'ferry-write', tmp, filePath, mode.toString(8)], { stdin: data });
      if (r.code !== 0) throw fail(new Error(r.stderr.toString().trim()));
      return;
    }
    const s = sftp;
    await new Promise<void>((resolve, reject) => {
      s.writeFile(tmp, typeof data === 'string' ? data : Buffer.from(data), { mode }, (e) => (e ? reject(fail(e)) : resolve()));
    });
    await new Promise<void>((resolve, reject) => {
      s.ext_openssh_rename(tmp, filePath, (e) => {
        if (!e) return resolve();
        s.unlink(tmp, () => reject(fail(e)));
      });
    });
  }
}

/**
 * ssh2 channels override destroy() and drop its error argument; use the stream's own so
 * that every consumer listening for errors gets the typed one (and none crashes without).
 */
function endWithError(s: Duplex, error: Error): void {
  if (s.listenerCount('error') > 0) Duplex.prototype.destroy.call(s, error);
  else Duplex.prototype.destroy.call(s);
}

function hostKeyError(verdict: HostKeyVerdict, spec: ResolvedSshHost): FerryException {
  const where = spec.port === 22 ? spec.hostName : `[${spec.hostName}]:${spec.port}`;
  switch (verdict.status) {
    case 'unknown':
      return new FerryException('SSH_HOST_KEY_UNKNOWN', `${where}: unknown host key ${verdict.keyType} ${verdict.fingerprint}; confirm the fingerprint to trust it`, {
        host: spec.hostName, port: spec.port, keyType: verdict.keyType, fingerprint: verdict.fingerprint,
      });
    case 'changed':
      return new FerryException('SSH_HOST_KEY_CHANGED', `${where}: HOST KEY CHANGED: now ${verdict.keyType} ${verdict.fingerprint}, known as ${verdict.expected.map((x) => `${x.keyType} ${x.fingerprint}`).join(', ')}. Refusing to connect.`, {
        host: spec.hostName, port: spec.port, keyType: verdict.keyType, fingerprint: verdict.fingerprint, expected: verdict.expected,
      });
    case 'revoked':
      return new FerryException('SSH_HOST_KEY_CHANGED', `${where}: host key ${verdict.fingerprint} is marked @revoked. Refusing to connect.`, {
        host: spec.hostName, port: spec.port, keyType: verdict.keyType, fingerprint: verdict.fingerprint, revoked: true,
      });
    default:
      return new FerryException('INTERNAL', 'host key trusted but connection failed');
  }
}

function tcpConnect(host: string, port: number, timeoutMs: number): Promise<Socket> {
  return new Promise((resolve, reject) => {
    const s = netConnect({ host, port });
    const timer = setTimeout(() => {
      s.destroy();
      reject(new FerryException('SSH_CONNECT_FAILED', `${host}:${port}: connection timed out after ${timeoutMs} ms`, { host, port }));
    }, timeoutMs);
    s.once('error', (e: NodeJS.ErrnoException) => {
      clearTimeout(timer);
      reject(new FerryException('SSH_CONNECT_FAILED', `${host}:${port}: ${e.message}`, { host, port, errno: e.code }));
    });
    s.once('connect', () => {
      clearTimeout(timer);
      s.setNoDelay(true);
      s.setKeepAlive(true, 10_000);
      resolve(s);
    });
  });
}

function forwardOut(client: Client, host: string, port: number, timeoutMs = 15_000, code: 'SSH_CONNECT_FAILED' | 'SSH_CHANNEL_REFUSED' = 'SSH_CHANNEL_REFUSED', via = ''): Promise<ClientChannel> {
  return new Promise((resolve, reject) => {
    // A jump host that cannot reach the next hop may never answer the channel open.
    const timer = setTimeout(() => reject(new FerryException(code, `cannot open a tunnel to ${host}:${port}${via}: no answer within ${Math.round(timeoutMs / 1000)} s`, { host, port })), timeoutMs);
    client.forwardOut('127.0.0.1', 0, host, port, (e, ch) => {
      clearTimeout(timer);
      if (e) reject(new FerryException(code, `cannot open a tunnel to ${host}:${port}${via}: ${e.message}`, { host, port }));
      else resolve(ch);
    });
  });
}

function expandHome(p: string, home: string): string {
  return p === '~' ? home : p.startsWith('~/') ? path.join(home, p.slice(2)) : path.resolve(p);
}

function safeUser(): string {
  try {
    return userInfo().username;
  } catch {
    return process.env.USER ?? 'root';
  }
}
