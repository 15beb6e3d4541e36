/**
 * Hosts persisted as JSON in Ferry's config dir, written atomically (temp + rename).
 * A corrupt file is reported with a clear error and never overwritten: the user's hosts
 * are not lost because Ferry could not read them.
 */
import { promises as fs } from 'node:fs';
import { homedir } from 'node:os';
import path from 'node:path';
import { z } from 'zod';
import { FerryException } from '../../../shared/errors';
import { HostConfigSchema } from '../../../shared/model/host';
import type { HostConfig } from '../../../shared/model/host';
import { describeIssues } from '../../../shared/contract';
import { writeFileAtomic } from '../transport/local-transport';

const FILE_VERSION = 1;
const HostsFileSchema = z.object({ version: z.literal(FILE_VERSION), hosts: z.array(HostConfigSchema) });

/** `$XDG_CONFIG_HOME/ferry`, else `~/.config/ferry`. */
export function defaultConfigDir(env: NodeJS.ProcessEnv = process.env): string {
  const base = env.XDG_CONFIG_HOME && path.isAbsolute(env.XDG_CONFIG_HOME) ? env.XDG_CONFIG_HOME : path.join(homedir(), '.config');
  return path.join(base, 'ferry');
}

export class HostRegistry {
  readonly file: string;
  private hosts: HostConfig[] | undefined;
  private queue: Promise<unknown> = Promise.resolve();

  /**
   * `builtin` hosts (the local lab) are always listed and cannot be removed or shadowed. A
   * function is asked each time: the lab's hosts change when it is started on another QEMU.
   */
  constructor(readonly configDir: string, private readonly builtinHosts: readonly HostConfig[] | (() => readonly HostConfig[]) = []) {
    this.file = path.join(configDir, 'hosts.json');
  }

  private get builtin(): readonly HostConfig[] {
    return typeof this.builtinHosts === 'function' ? this.builtinHosts() : this.builtinHosts;
  }

  async list(): Promise<HostConfig[]> {
    return [...this.builtin, ...(await this.load())];
  }

  async get(id: string): Promise<HostConfig> {
    const host = (await this.list()).find((h) => h.id === id);
    if (!host) throw new FerryException('NOT_FOUND', `no host with id "${id}"`, { id });
    return host;
  }

  add(config: HostConfig): Promise<HostConfig> {
    return this.serial(async () => {
      const parsed = HostConfigSchema.safeParse(config);
      if (!parsed.success) throw new FerryException('INVALID_REQUEST', `invalid host: ${describeIssues(parsed.error)}`);
      const hosts = await this.load();
      if (this.builtin.some((h) => h.id === config.id) || hosts.some((h) => h.id === config.id)) {
        throw new FerryException('ALREADY_EXISTS', `a host with id "${config.id}" already exists`, { id: config.id });
      }
      const next = [...hosts, parsed.data];
      await this.save(next);
      return parsed.data;
    });
  }

  /** Replaces a host's settings (same id); the built-in lab hosts cannot be edited. */
  update(config: HostConfig): Promise<HostConfig> {
    return this.serial(async () => {
      const parsed = HostConfigSchema.safeParse(config);
      if (!parsed.success) throw new FerryException('INVALID_REQUEST', `invalid host: ${describeIssues(parsed.error)}`);
      if (this.builtin.some((h) => h.id === config.id)) {
        throw new FerryException('INVALID_REQUEST', `host "${config.id}" is built in (the local lab) and cannot be edited`, { id: config.id });
      }
      const hosts = await this.load();
      if (!hosts.some((h) => h.id === config.id)) throw new FerryException('NOT_FOUND', `no host with id "${config.id}"`, { id: config.id });
      await this.save(hosts.map((h) => (h.id === config.id ? parsed.data : h)));
      return parsed.data;
    });
  }

  remove(id: string): Promise<void> {
    return this.serial(async () => {
      if (this.builtin.some((h) => h.id === id)) {
        throw new FerryException('INVALID_REQUEST', `host "${id}" is built in (the local lab) and cannot be removed`, { id });
      }
      const hosts = await this.load();
      if (!hosts.some((h) => h.id === id)) throw new FerryException('NOT_FOUND', `no host with id "${id}"`, { id });
      await this.save(hosts.filter((h) => h.id !== id));
    });
  }

  /** Runs mutations one after another so two quick adds cannot lose each other. */
  private serial<T>(fn: () => Promise<T>): Promise<T> {
    const run = this.queue.then(fn, fn);
    this.queue = run.catch(() => undefined); // the caller of run gets its error; the queue only serialises writes
    return run;
  }

  private async load(): Promise<HostConfig[]> {
    if (this.hosts) return this.hosts;
    let text: string;
    try {
      text = await fs.readFile(this.file, 'utf8');
    } catch (e) {
      if ((e as NodeJS.ErrnoException).code === 'ENOENT') return (this.hosts = []);
      throw new FerryException('IO_ERROR', `cannot read ${this.file}: ${(e as Error).message}`, { path: this.file });
    }
    let json: unknown;
    try {
      json = JSON.parse(text);
    } catch (e) {
      throw new FerryException('CONFIG_CORRUPT', `${this.file} is not valid JSON (${(e as Error).message}); fix or move it away — Ferry will not overwrite it`, { path: this.file });
    }
    const parsed = HostsFileSchema.safeParse(json);
    if (!parsed.success) {
      throw new FerryException('CONFIG_CORRUPT', `${this.file} is not a Ferry hosts file: ${describeIssues(parsed.error)}; fix or move it away — Ferry will not overwrite it`, { path: this.file });
    }
    return (this.hosts = parsed.data.hosts);
  }

  private async save(hosts: HostConfig[]): Promise<void> {
    await fs.mkdir(this.configDir, { recursive: true, mode: 0o700 });
    await writeFileAtomic(this.file, `${JSON.stringify({ version: FILE_VERSION, hosts }, null, 2)}\n`, 0o600);
    this.hosts = hosts;
  }
}
