/**
 * `ferry recover`, `ferry migrations`, `ferry control`, `ferry hosts trust`: what virsh does
 * for a running migration, from any shell. Controls act through the Ferry process that runs
 * the migration (its control socket, see core/control-server.ts), and its timeline records
 * who acted. Their command lines are parsed beforehand, from the command table (cli-commands.ts).
 */
import { createInterface } from 'node:readline/promises';
import type { ConsoleService } from './core/console-service';
import type { Migration } from './core/migration/migration-engine';
import { askPeer, controlPeers } from './core/control-server';
import { FerryException } from '../shared/errors';
import type { MigrationSummaryPayload } from '../shared/contract';
import { parseByteSize } from '../shared/analysis/units';
import { CliUsageError } from './cli-commands';

export interface CliIo {
  out: NodeJS.WritableStream;
  errOut: NodeJS.WritableStream;
  /** Prints a migration's progress until it ends; returns the exit code. */
  follow(m: Migration, cancelOnInterrupt: boolean): Promise<number>;
}

const who = () => `ferry control (pid ${process.pid}, user ${process.env.USER ?? process.getuid?.() ?? '?'})`;

/** Migrations of every Ferry process answering in this config dir (this one excluded). */
async function peerMigrations(configDir: string): Promise<{ pid: number; m: MigrationSummaryPayload }[]> {
  const found: { pid: number; m: MigrationSummaryPayload }[] = [];
  await Promise.all(controlPeers(configDir).map(async (pid) => {
    const r = await askPeer(configDir, pid, 'migrations:list', {}, who()).catch(() => undefined); // a process that does not answer runs nothing we can reach
    if (r?.ok) for (const m of r.value as MigrationSummaryPayload[]) found.push({ pid, m });
  }));
  return found;
}

const TERMINAL = ['completed', 'failed', 'cancelled'];

export async function migrationsCommand(flags: ReadonlyMap<string, string | true>, service: ConsoleService, io: CliIo): Promise<number> {
  const values = { all: flags.get('all') === true, json: flags.get('json') === true };
  const list = (await peerMigrations(service.configDir)).filter((x) => values.all || !TERMINAL.includes(x.m.phase));
  if (values.json) io.out.write(`${JSON.stringify(list.map((x) => ({ pid: x.pid, ...x.m })), null, 2)}\n`);
  else if (list.length === 0) io.out.write(`no ${values.all ? '' : 'running '}migration in any Ferry process\n`);
  else for (const { pid, m } of list) io.out.write(`${m.id}\t${String(m.plan.vm)}\t${String(m.plan.from)} -> ${String(m.plan.to)}\t${m.phase}\tpid ${pid}\n`);
  return 0;
}

type Control = { action: 'cancel' } | { action: 'set-bandwidth'; bytesPerSecond: number } | { action: 'set-downtime'; ms: number } | { action: 'postcopy' } | { action: 'stop-vm' } | { action: 'pause-postcopy' } | { action: 'recover' } | { action: 'continue' };

const CONTROLS = 'cancel, postcopy, stop-vm, pause-postcopy, recover, continue, bandwidth MB/s, downtime ms';

function controlOf(action: string, value: string | undefined): Control {
  const needs = (what: string) => {
    if (value === undefined) throw new CliUsageError(`${action} needs a value: ${what}`);
    return value;
  };
  switch (action) {
    case 'cancel': case 'postcopy': case 'stop-vm': case 'pause-postcopy': case 'recover': case 'continue':
      if (value !== undefined) throw new CliUsageError(`${action} takes no value`);
      return { action };
    case 'bandwidth': {
      const b = parseByteSize(needs('MB/s, e.g. 100 or 1.5G'), 'M');
      if (!b) throw new CliUsageError('bandwidth must be a positive size per second, e.g. 100 (MB/s) or 1.5G');
      return { action: 'set-bandwidth', bytesPerSecond: b };
    }
    case 'downtime': {
      const ms = Number(needs('ms, e.g. 500'));
      if (!Number.isInteger(ms) || ms < 1 || ms > 2_000_000) throw new CliUsageError('downtime must be a whole number of ms from 1 to 2000000');
      return { action: 'set-downtime', ms };
    }
    default:
      throw new CliUsageError(`unknown control "${action}" (one of: ${CONTROLS})`);
  }
}

/** `ferry control TARGET ACTION [VALUE]` (the command table checked there are two or three). */
export async function controlCommand(positionals: string[], service: ConsoleService, io: CliIo): Promise<number> {
  const [target, action, value] = positionals as [string, string, string | undefined];
  const control = controlOf(action, value);
  const running = (await peerMigrations(service.configDir)).filter((x) => !TERMINAL.includes(x.m.phase));
  const matches = running.filter((x) => x.m.id === target || x.m.plan.vm === target);
  if (matches.length === 0) {
    throw new FerryException('NOT_FOUND', `no Ferry process runs a migration "${target}"${running.length ? ` (running: ${running.map((x) => `${String(x.m.plan.vm)} ${x.m.id}`).join(', ')})` : ''}; a migration whose Ferry was stopped is picked up by ferry recover`);
  }
  if (matches.length > 1) throw new CliUsageError(`"${target}" names ${matches.length} migrations: give the id (${matches.map((x) => x.m.id).join(', ')})`);
  const { pid, m } = matches[0]!;
  const r = await askPeer(service.configDir, pid, 'migrations:control', { id: m.id, control }, who());
  if (!r.ok) throw new FerryException(r.error.code, r.error.message);
  io.out.write(`${action}${value !== undefined ? ` ${value}` : ''}: done (${String(m.plan.vm)} ${m.id}, through Ferry pid ${pid})\n`);
  return 0;
}

/**
 * Connects every configured host and picks up the migrations a previous Ferry started on
 * them (state files beside the source VMs); follows each to its end, recording it.
 */
export async function recoverCommand(service: ConsoleService, io: CliIo): Promise<number> {
  await service.listenForControl('ferry recover');
  const hosts = await service.registry.list();
  await service.connectAll();
  const found = await service.recovered();
  const listed = await service.call('hosts:list', {});
  const unreachable = listed.ok ? listed.value.filter((h) => h.state !== 'connected') : [];
  for (const h of unreachable) io.errOut.write(`ferry: ${h.config.id} not reached${h.lastError ? `: ${h.lastError.message}` : ''}; its migrations are not picked up\n`);
  if (found.length === 0) {
    io.out.write(`no migration to pick up on ${hosts.length - unreachable.length} reachable host(s)\n`);
    return unreachable.length ? 1 : 0;
  }
  for (const m of found) io.out.write(`picked up ${m.id}: ${m.plan.vm} ${m.plan.from} -> ${m.plan.to} (${m.phase}); timeline ${m.timelineFile}\n`);
  const codes = await Promise.all(found.map((m) => io.follow(m, false)));
  return codes.every((c) => c === 0) && unreachable.length === 0 ? 0 : 1;
}

/** `ferry hosts trust HOST [--fingerprint SHA256:…]`: shows the key a host presents; trusts it once confirmed. */
export async function trustCommand(id: string, fingerprint: string | true | undefined, service: ConsoleService, io: CliIo, stdin: NodeJS.ReadableStream & { isTTY?: boolean } = process.stdin): Promise<number> {
  const r = await service.call('hosts:connect', { id });
  if (r.ok) {
    io.out.write(`${id}: its host key is already trusted (${r.value.label})\n`);
    return 0;
  }
  if (r.error.code !== 'SSH_HOST_KEY_UNKNOWN') throw new FerryException(r.error.code, r.error.message);
  const d = r.error.details ?? {};
  const fp = String(d.fingerprint ?? '');
  io.out.write(`${id} (${String(d.host ?? '')}:${String(d.port ?? '')}) presents ${String(d.keyType ?? '')} ${fp}\n`);
  let confirmed = typeof fingerprint === 'string' ? fingerprint : undefined;
  if (confirmed === undefined) {
    if (!stdin.isTTY) throw new CliUsageError(`not trusted: compare the fingerprint with the host's own (ssh-keygen -lf /etc/ssh/ssh_host_*_key.pub there), then run ferry hosts trust ${id} --fingerprint ${fp}`);
    const rl = createInterface({ input: stdin, output: io.out });
    const a = (await rl.question('Is this the fingerprint the host itself shows? Trust it? [y/N] ')).trim().toLowerCase();
    rl.close();
    if (a !== 'y' && a !== 'yes') {
      io.out.write('not trusted\n');
      return 1;
    }
    confirmed = fp;
  }
  if (confirmed !== fp) throw new FerryException('SSH_HOST_KEY_UNKNOWN', `${id} presents ${fp}, not ${confirmed}: not trusted`);
  const t = await service.call('hosts:trust-key', { id, fingerprint: confirmed });
  if (!t.ok) throw new FerryException(t.error.code, t.error.message);
  io.out.write(`trusted ${fp} for ${id}; connected (${t.value.label})\n`);
  return 0;
}

