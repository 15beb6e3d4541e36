/**
 * Ferry's log: connections, channel refusals, reconnects, every control and every error
 * that is handled rather than shown. One line per entry,
 * `2026-12-01T09:33:08.123Z WARN  ssh root@hv1:22: channel refused (busy), queued`,
 * appended to `<configDir>/logs/ferry.log` (rotated at 5 MB, three files kept), and kept in
 * a small in-memory ring for "Copy diagnostics". Secrets never reach it: values under keys
 * that name one are replaced, and so is a token in a URL.
 *
 * Appends are synchronous on purpose: the log is written on rare events (never per sample),
 * and a Ferry killed with -9 must still have said what it was doing.
 */
import { appendFileSync, mkdirSync, renameSync, rmSync, statSync } from 'node:fs';
import path from 'node:path';

export type LogLevel = 'debug' | 'info' | 'warn' | 'error';
const RANK: Record<LogLevel, number> = { debug: 10, info: 20, warn: 30, error: 40 };

export interface LogSinkOptions {
  /** Where `ferry.log` goes; undefined keeps entries in memory only. */
  dir?: string;
  /** Rotate when the file passes this size. Default 5 MB. */
  maxBytes?: number;
  /** Rotated files kept besides the live one. Default 3. */
  keep?: number;
  /** Lowest level written. Default info (FERRY_LOG_LEVEL=debug for more). */
  level?: LogLevel;
  /** Also copy lines to stderr (FERRY_LOG_STDERR=1). */
  stderr?: boolean;
}

const SECRET_KEY = /pass(word|phrase)?|secret|token|private|credential|authorization|cookie/i;
const RING_LINES = 2000;

class Sink {
  dir: string | undefined;
  file: string | undefined;
  maxBytes = 5 << 20;
  keep = 3;
  level: LogLevel = 'info';
  stderr = false;
  bytes = 0;
  readonly ring: string[] = [];
  failed = false;

  configure(o: LogSinkOptions): void {
    this.dir = o.dir;
    this.file = o.dir ? path.join(o.dir, 'ferry.log') : undefined;
    this.maxBytes = o.maxBytes ?? 5 << 20;
    this.keep = o.keep ?? 3;
    this.level = o.level ?? envLevel() ?? 'info';
    this.stderr = o.stderr ?? process.env.FERRY_LOG_STDERR === '1';
    this.failed = false;
    if (this.dir) {
      try {
        mkdirSync(this.dir, { recursive: true, mode: 0o700 });
        this.bytes = statSync(this.file!, { throwIfNoEntry: false })?.size ?? 0;
      } catch (e) {
        this.fail(e);
      }
    }
  }

  write(line: string): void {
    this.ring.push(line);
    if (this.ring.length > RING_LINES) this.ring.splice(0, this.ring.length - RING_LINES);
    if (this.stderr) process.stderr.write(`${line}\n`);
    if (!this.file || this.failed) return;
    try {
      if (this.bytes + line.length + 1 > this.maxBytes) this.rotate();
      this.append(line);
    } catch (e) {
      this.fail(e);
    }
  }

  /** Appends one line; a log directory removed while Ferry runs is made again, once per line. */
  private append(line: string): void {
    try {
      appendFileSync(this.file!, `${line}\n`, { mode: 0o600 });
    } catch (e) {
      if ((e as NodeJS.ErrnoException).code !== 'ENOENT') throw e;
      mkdirSync(this.dir!, { recursive: true, mode: 0o700 });
      this.bytes = 0;
      appendFileSync(this.file!, `${line}\n`, { mode: 0o600 });
    }
    this.bytes += Buffer.byteLength(line) + 1;
  }

  private rotate(): void {
    const f = this.file!;
    rmSync(`${f}.${this.keep}`, { force: true });
    for (let i = this.keep - 1; i >= 1; i--) {
      try {
        renameSync(`${f}.${i}`, `${f}.${i + 1}`);
      } catch {
        // that generation does not exist yet: nothing to move
      }
    }
    try {
      renameSync(f, `${f}.1`);
    } catch {
      // no live file yet
    }
    this.bytes = 0;
  }

  /** A log that cannot be written must not take Ferry down: say so once, on stderr. */
  private fail(e: unknown): void {
    if (this.failed) return;
    this.failed = true;
    process.stderr.write(`ferry: cannot write the log in ${this.dir}: ${e instanceof Error ? e.message : String(e)}; logging to memory only\n`);
  }
}

function envLevel(): LogLevel | undefined {
  const v = process.env.FERRY_LOG_LEVEL;
  return v === 'debug' || v === 'info' || v === 'warn' || v === 'error' ? v : undefined;
}

const sink = new Sink();
sink.level = envLevel() ?? 'info';
sink.stderr = process.env.FERRY_LOG_STDERR === '1';

/** Points the log at `<dir>/ferry.log` (the console service does this with its config dir). */
export function configureLog(options: LogSinkOptions): void {
  sink.configure(options);
}

/** The live log file, if any. */
export function logFile(): string | undefined {
  return sink.file;
}

/** The last lines logged by this process (newest last). */
export function recentLogLines(max = RING_LINES): string[] {
  return sink.ring.slice(-max);
}

/** Replaces secrets in anything about to be logged. */
export function redact(value: unknown, depth = 0): unknown {
  if (typeof value === 'string') return value.replace(/([?&;]token=)[^&\s"']+/gi, '$1[redacted]');
  if (value === null || typeof value !== 'object' || depth > 4) return value;
  if (value instanceof Error) return redact(value.message, depth);
  if (Array.isArray(value)) return value.map((v) => redact(v, depth + 1));
  const out: Record<string, unknown> = {};
  for (const [k, v] of Object.entries(value)) out[k] = SECRET_KEY.test(k) ? '[redacted]' : redact(v, depth + 1);
  return out;
}

function describe(e: unknown): string {
  if (e instanceof Error) {
    const code = (e as { code?: unknown }).code;
    return typeof code === 'string' ? `${e.message} [${code}]` : e.message;
  }
  return typeof e === 'string' ? e : JSON.stringify(redact(e));
}

export class Logger {
  constructor(readonly scope: string) {}

  /** A logger for one connection, migration or job: its scope is prefixed to every line. */
  child(scope: string): Logger {
    return new Logger(this.scope ? `${this.scope} ${scope}` : scope);
  }

  debug(message: string, details?: Record<string, unknown>): void {
    this.write('debug', message, details);
  }
  info(message: string, details?: Record<string, unknown>): void {
    this.write('info', message, details);
  }
  warn(message: string, details?: Record<string, unknown>): void {
    this.write('warn', message, details);
  }
  error(message: string, details?: Record<string, unknown>): void {
    this.write('error', message, details);
  }

  /**
   * For a `.catch()` whose error is dropped on purpose: the drop is logged, never silent.
   * `p.catch(log.dropped('closing the QMP monitor'))` resolves to undefined.
   */
  dropped(what: string, level: LogLevel = 'warn'): (e: unknown) => undefined {
    return (e: unknown) => {
      this.write(level, `${what}: ${describe(e)}`);
      return undefined;
    };
  }

  private write(level: LogLevel, message: string, details?: Record<string, unknown>): void {
    if (RANK[level] < RANK[sink.level]) return;
    const text = redact(message) as string;
    const extra = details && Object.keys(details).length ? ` ${JSON.stringify(redact(details))}` : '';
    sink.write(`${new Date().toISOString()} ${level.toUpperCase().padEnd(5)} ${this.scope ? `${this.scope}: ` : ''}${text.replace(/\n/g, '\\n')}${extra}`);
  }
}

/** The root logger; modules take a child: `const log = rootLog.child('qmp')`. */
export const rootLog = new Logger('');
