/**
 * The `ferry` command line. Plain, scriptable output; `--json` where a script wants it;
 * exit codes: 0 ok, 1 the operation failed, 2 bad usage.
 */
import { ConsoleService } from './core/console-service';
import type { FerryError } from '../shared/errors';
import type { HostInfo } from '../shared/contract';
import type { VmInfo } from '../shared/model/vm';

const USAGE = `usage: ferry <command> [options]

  ferry hosts list [--json]        the hosts Ferry knows and their state
  ferry vms list HOST [--json]     the VMs on a host
  ferry serve                      the console in a browser (see README)
  ferry help                       this text
`;

export async function main(argv: string[], out = process.stdout, errOut = process.stderr): Promise<number> {
  const json = argv.includes('--json');
  const args = argv.filter((a) => a !== '--json');
  const [cmd, sub, ...rest] = args;
  if (!cmd || cmd === 'help' || cmd === '--help' || cmd === '-h') {
    out.write(USAGE);
    return cmd ? 0 : 2;
  }
  if (cmd === 'serve') {
    await import('./serve');
    return 0;
  }
  const service = new ConsoleService();
  const fail = (e: FerryError) => {
    errOut.write(`ferry: ${e.message} [${e.code}]\n`);
    return 1;
  };
  try {
    if (cmd === 'hosts' && sub === 'list' && rest.length === 0) {
      const r = await service.invoke('hosts:list', {});
      if (!r.ok) return fail(r.error);
      const hosts = r.value as HostInfo[];
      out.write(json ? `${JSON.stringify(hosts, null, 2)}\n` : hosts.map((h) => `${h.config.id}\t${h.state}\t${h.label}\n`).join(''));
      return 0;
    }
    if (cmd === 'vms' && sub === 'list' && rest.length === 1) {
      const r = await service.invoke('vms:list', { hostId: rest[0] });
      if (!r.ok) return fail(r.error);
      const vms = r.value as VmInfo[];
      out.write(json ? `${JSON.stringify(vms, null, 2)}\n` : vms.map((v) => `${v.name}\t${v.runState}\t${v.qmpSocket}\n`).join(''));
      return 0;
    }
    errOut.write(`ferry: unknown command: ${args.join(' ')}\n${USAGE}`);
    return 2;
  } finally {
    await service.dispose();
  }
}

const isEntry = process.argv[1] && /(?:^|[/\\])(?:cli\.(?:ts|mjs)|ferry(?:\.mjs)?)$/.test(process.argv[1]);
if (isEntry) {
  main(process.argv.slice(2)).then((code) => {
    process.exitCode = code;
  });
}
