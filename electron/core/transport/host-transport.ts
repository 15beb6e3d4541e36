import type { Duplex } from 'node:stream';
import type { ChildProcess } from 'node:child_process';

/** Result of running a command to completion. `code` is null when the process died of a signal. */
export interface ExecResult {
  code: number | null;
  signal: string | null;
  stdout: string;
  stderr: string;
}

/** The command itself was not there (the shell's 127, or its "not found"): a tool the host lacks. */
export function commandMissing(r: ExecResult): boolean {
  return r.code === 127 || /not found/i.test(r.stderr);
}

export interface ExecOptions {
  /** Bytes written to the command's stdin, then stdin is closed. */
  stdin?: string | Uint8Array;
  /** Kill (local) or close the channel (ssh) after this many ms; rejects with EXEC_FAILED. */
  timeoutMs?: number;
  /** Environment additions (local only; ssh servers usually refuse env requests). */
  env?: Record<string, string>;
}

/** A long-running process on a host. Its streams are live; `exited` settles once. */
export interface SpawnedProcess {
  readonly stdin: NodeJS.WritableStream;
  readonly stdout: NodeJS.ReadableStream;
  readonly stderr: NodeJS.ReadableStream;
  readonly exited: Promise<{ code: number | null; signal: string | null }>;
  /** Local: signals the process. SSH: asks the server to signal, then closes the channel. */
  kill(signal?: NodeJS.Signals): void;
}

export type TransportState = 'connecting' | 'connected' | 'disconnected';

export interface TransportStateChange {
  state: TransportState;
  /** Set when the state is 'disconnected' because of a failure. */
  reason?: string;
}

/**
 * One way to reach a host. Commands are always argv arrays: the local transport passes
 * them to execve, the SSH transport quotes them with the single `quoteArgv` function.
 */
export interface HostTransport {
  readonly kind: 'local' | 'ssh';
  /** A short description for logs and errors, e.g. `local` or `root@hv1:22`. */
  readonly label: string;
  readonly state: TransportState;
  connect(): Promise<void>;
  close(): Promise<void>;
  exec(argv: readonly string[], options?: ExecOptions): Promise<ExecResult>;
  spawn(argv: readonly string[]): Promise<SpawnedProcess>;
  /** A byte stream to a unix socket on the host. */
  openUnix(path: string): Promise<Duplex>;
  /**
   * Listens on a unix socket on the host (SSH: OpenSSH streamlocal remote forwarding); each
   * connection made to it there arrives here as a Duplex. `close` stops listening and removes
   * the socket; connections already made stay open.
   */
  listenUnix(path: string, onConnection: (stream: Duplex) => void): Promise<UnixListener>;
  /** A byte stream to a TCP port, connected from the host's point of view. */
  openTcp(host: string, port: number): Promise<Duplex>;
  readFile(path: string): Promise<Buffer>;
  /**
   * The names in a directory, where reading them costs no process (this machine): callers
   * that would otherwise run a shell script per call (the board's VM listing) use it when
   * present. Throws NOT_FOUND when there is no such directory.
   */
  readDir?(path: string): Promise<string[]>;
  /** Writes atomically where the host allows it (temp file + rename). */
  writeFile(path: string, data: string | Uint8Array, mode?: number): Promise<void>;
  onStateChange(listener: (change: TransportStateChange) => void): () => void;
}

export interface UnixListener {
  readonly path: string;
  close(): Promise<void>;
}

export type { ChildProcess };
