/**
 * Bad usage of every command in the table ends with exit code 2 and one line naming the
 * command and the problem, before anything is touched: no lab, no QEMU, no SSH. The console
 * service, the lab and the browser server are replaced here by stand-ins that record any use.
 */
import { afterAll, afterEach, beforeAll, beforeEach, describe, expect, it, vi } from 'vitest';
import { spawnSync } from 'node:child_process';
import { mkdtempSync, readdirSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { COMMANDS, USAGE, commandSpec } from './cli-commands';
import type { CommandSpec } from './cli-commands';
import { ferry } from '../test/support/cli-main';
import { runCli } from '../test/support/cli';

const seen = vi.hoisted(() => ({ services: 0, touched: [] as string[] }));

vi.mock('./core/console-service', () => ({
  ConsoleService: class {
    constructor() {
      seen.services++;
      // Any use but dispose() means a host, the lab or the engine was about to be touched.
      return new Proxy(this, {
        get: (_t, k) => {
          if (k === 'dispose') return () => Promise.resolve();
          if (k === 'then') return undefined;
          seen.touched.push(`service.${String(k)}`);
          throw new Error(`the test's console service was used: ${String(k)}`);
        },
      });
    }
  },
}));
vi.mock('./core/lab/local-lab', async (importOriginal) => {
  const touch = (what: string) => () => {
    seen.touched.push(what);
    throw new Error(`${what} was called`);
  };
  return { ...(await importOriginal<object>()), labUp: touch('labUp'), labDown: touch('labDown'), labStatus: touch('labStatus') };
});
vi.mock('./serve', () => ({
  serve: () => {
    seen.touched.push('serve');
    throw new Error('serve was called');
  },
}));

const words = (c: CommandSpec) => c.name.split(' ');
const range = (c: CommandSpec) => (typeof c.positionals === 'number' ? { min: c.positionals, max: c.positionals } : c.positionals);
const fill = (n: number) => Array.from({ length: n }, (_, i) => `arg${i + 1}`);
const pointer = (c: CommandSpec) => `ferry: see ferry help${c.name === 'help' ? '' : ` ${c.name}`}`;

/** Exit code 2; stderr is the one-line message, then the pointer to the command's help. */
function expectUsageError(r: { code: number; out: string; err: string }, c: CommandSpec, message: string): void {
  expect(r.code, r.err).toBe(2);
  expect(r.out).toBe('');
  expect(r.err.split('\n')).toEqual([`ferry: ${c.name}: ${message}`, pointer(c), '']);
}

describe('ferry usage errors, from the command table, before anything is touched', () => {
  let config: string;
  let saved: string | undefined;
  beforeAll(() => {
    config = mkdtempSync(path.join(tmpdir(), 'ferry-cli-usage-'));
    saved = process.env.XDG_CONFIG_HOME;
    process.env.XDG_CONFIG_HOME = config;
  });
  afterAll(() => {
    if (saved === undefined) delete process.env.XDG_CONFIG_HOME;
    else process.env.XDG_CONFIG_HOME = saved;
    rmSync(config, { recursive: true, force: true });
  });

  it('has every command the CLI offers in its table', () => {
    expect(COMMANDS.map((c) => c.name)).toEqual(expect.arrayContaining([
      'lab up', 'lab demo', 'lab down', 'lab status', 'hosts list', 'hosts trust', 'vm list', 'vm start', 'vm stop', 'guest', 'migrate', 'preflight',
      'evacuate', 'attach', 'migrations', 'control', 'recover', 'save', 'restore', 'states', 'timeline', 'report', 'diagnostics', 'compare', 'serve', 'help',
    ]));
  });

  it('documents every option of every command in its usage', () => {
    for (const c of COMMANDS) {
      const text = c.usage.join('\n');
      for (const [opt, o] of Object.entries(c.options)) {
        expect(text, `${c.name} --${opt}`).toMatch(o.short ? new RegExp(`-${o.short} `) : new RegExp(`--${opt}(?![a-z-])`));
      }
    }
  });

  describe.each(COMMANDS.map((c) => [c.name, c] as const))('%s', (_name, c) => {
    // What the table refuses is refused before a console service is even created.
    let services = 0;
    beforeEach(() => {
      services = seen.services;
    });
    afterEach(() => {
      expect(seen.services).toBe(services);
    });
    const { min, max } = range(c);
    const ok = fill(min);

    it('refuses an unknown option', async () => {
      expectUsageError(await ferry(...words(c), ...ok, '--no-such-option'), c, 'unknown option --no-such-option');
      expectUsageError(await ferry(...words(c), ...ok, '-Z'), c, 'unknown option -Z');
    });

    const valued = Object.entries(c.options).filter(([, o]) => o.type === 'string');
    const flags = Object.entries(c.options).filter(([, o]) => o.type === 'boolean');
    if (valued.length > 0) it('refuses a missing value', async () => {
      for (const [opt, o] of valued) {
        expectUsageError(await ferry(...words(c), ...ok, `--${opt}`), c, `--${opt} needs a value`);
        // A value that looks like an option is taken for a forgotten value.
        expectUsageError(await ferry(...words(c), ...ok, `--${opt}`, '--no-such-option'), c, `--${opt} needs a value`);
        if (o.short) expectUsageError(await ferry(...words(c), ...ok, `-${o.short}`), c, `-${o.short} needs a value`);
      }
    });
    if (flags.length > 0) it('refuses a value given to a switch', async () => {
      for (const [opt] of flags) expectUsageError(await ferry(...words(c), ...ok, `--${opt}=yes`), c, `--${opt} takes no value`);
    });

    it('refuses the wrong number of arguments', async () => {
      if (max === 0) expectUsageError(await ferry(...words(c), 'extra'), c, "takes no arguments (got 'extra')");
      else if (max !== Infinity) {
        const want = min === max ? `${min} argument${min === 1 ? '' : 's'}` : `${min} to ${max} arguments`;
        expectUsageError(await ferry(...words(c), ...fill(max + 1)), c, `expected ${want}, got ${max + 1} ('arg${max + 1}' is too many)`);
      }
      if (min > 0) {
        const want = min === max ? `${min} argument${min === 1 ? '' : 's'}` : max === Infinity ? `at least ${min} arguments` : `${min} to ${max} arguments`;
        expectUsageError(await ferry(...words(c), ...fill(min - 1)), c, `expected ${want}, got ${min - 1}`);
      }
    });

    it('prints its usage for ferry help NAME and NAME --help, exit 0', async () => {
      const help = await ferry('help', ...words(c));
      expect(help).toEqual({ code: 0, out: `usage:\n${c.usage.map((l) => `  ${l}\n`).join('')}`, err: '' });
      expect(help.out).toContain(`ferry ${c.name}`);
      expect(await ferry(...words(c), '--help')).toEqual(help);
      expect(await ferry(...words(c), '-h')).toEqual(help);
    });
  });

  it('ferry help lists every command (exit 0); bare ferry prints the same and exits 2', async () => {
    const help = await ferry('help');
    expect(help.code).toBe(0);
    expect(help.out).toBe(USAGE);
    for (const c of COMMANDS) expect(help.out).toContain(`  ${c.usage[0]!}\n`);
    expect(help.out).toContain('ferry help [COMMAND]');
    expect(await ferry('--help')).toEqual(help);
    expect(await ferry()).toEqual({ ...help, code: 2 });
  });

  it('ferry help of a group lists its commands; of an unknown command, names it (exit 2)', async () => {
    const lab = await ferry('help', 'lab');
    expect(lab.code).toBe(0);
    for (const c of COMMANDS.filter((x) => x.name.startsWith('lab '))) expect(lab.out).toContain(c.usage[0]);
    expect(lab.out).not.toContain('ferry migrate');
    expect(await ferry('help', 'nosuch')).toEqual({ code: 2, out: '', err: 'ferry: help: no command "nosuch"\nferry: see ferry help\n' });
    expect((await ferry('help', 'vm', 'nosuch')).err).toMatch(/^ferry: help: no command "vm nosuch"\n/);
  });

  it('names an unknown command, and a group without or with an unknown subcommand', async () => {
    expect(await ferry('nosuch', '--json')).toEqual({ code: 2, out: '', err: 'ferry: unknown command: nosuch\nferry: see ferry help\n' });
    expect(await ferry('lab')).toEqual({ code: 2, out: '', err: 'ferry: lab needs one of: up, demo, down, status\nferry: see ferry help lab\n' });
    expect(await ferry('vm', 'restart', 'h', 'v')).toEqual({ code: 2, out: '', err: 'ferry: vm has no command "restart" (its commands: list, start, stop)\nferry: see ferry help vm\n' });
  });

  it('says which commands an option belongs to when it is given to another', async () => {
    expectUsageError(await ferry('vm', 'list', 'lab-a', '--copy-storage'), commandSpec('vm list'), '--copy-storage only applies to migrate and preflight');
    expectUsageError(await ferry('lab', 'down', '--fingerprint', 'x'), commandSpec('lab down'), '--fingerprint only applies to hosts trust');
  });

  it.each([
    [['lab', 'up', '--libvirt', '--netns'], 'lab up', '--libvirt and --netns do not go together'],
    [['lab', 'up', '--memory', 'lots'], 'lab up', '--memory must be a number from 64 to 65536'],
    [['lab', 'up', '--accel', 'xen'], 'lab up', '--accel must be kvm, tcg or auto'],
    [['lab', 'demo', '--compare', 'nothing'], 'lab demo', '--compare must be postcopy (precopy vs postcopy) or converge (auto-converge vs dirty-limit)'],
    [['vm', 'start', 'lab-a', 'v', '--memory', '1'], 'vm start', '--memory must be a number from 16 to 1048576'],
    [['migrate', 'demo', '--to', 'b'], 'migrate', 'migrate needs --from HOST and --to HOST'],
    [['migrate', 'demo', '--from', 'a', '--to', 'b', '--policy', 'nope'], 'migrate', '--policy must be manual, postcopy-when-never, downtime-steps, dynamic-rate or deadline'],
    [['migrate', 'demo', '--from', 'a', '--to', 'b', '--tunnel', 'tcp'], 'migrate', '--tunnel takes one value: ssh'],
    [['migrate', 'demo', '--from', 'a', '--to', 'b', '--capabilities', 'Bad Name'], 'migrate', '--capabilities: "Bad Name" is not NAME or NAME=on|off'],
    [['preflight', 'demo', '--from', 'a', '--to', 'b', '--storage-bandwidth', '10'], 'preflight', '--storage-bandwidth only applies with --copy-storage'],
    [['evacuate', 'lab-a'], 'evacuate', 'evacuate needs --to HOST[,HOST]'],
    [['evacuate', 'lab-a', '--to', 'lab-b', '--deadline', 'soon'], 'evacuate', '--deadline must be a duration like 90s or 5m'],
    [['attach', 'lab-a', 'demo', '--qmp-socket', 'qmp.sock'], 'attach', '--qmp-socket needs an absolute path on the host'],
    [['save', 'lab-a', 'demo', 'f.state', '--compress', 'xz'], 'save', '--compress must be zstd, gzip or none'],
    [['control', 'demo', 'bandwidth'], 'control', 'bandwidth needs a value: MB/s, e.g. 100 or 1.5G'],
    [['control', 'demo', 'faster'], 'control', 'unknown control "faster" (one of: cancel, postcopy, stop-vm, pause-postcopy, recover, continue, bandwidth MB/s, downtime ms)'],
    [['timeline', 'f.jsonl', '--csv', '--json'], 'timeline', 'timeline needs exactly one of --csv, --json or --openmetrics'],
    [['compare', 'a.jsonl', 'b.jsonl'], 'compare', 'compare needs -o FILE.html'],
    [['serve', '--port', '70000'], 'serve', '--port must be a port number from 0 to 65535'],
  ])('checks the values too: %j', async (argv, name, message) => {
    const r = await ferry(...argv);
    const c = commandSpec(name);
    const named = message.startsWith(`${name} `) ? message : `${name}: ${message}`;
    expect(r).toEqual({ code: 2, out: '', err: `ferry: ${named}\n${pointer(c)}\n` });
  });

  it('touched no host, no lab and no server in any of the above, and wrote nothing', () => {
    expect(seen.touched).toEqual([]);
    expect(readdirSync(config)).toEqual([]);
  });
});

describe('the ferry process', () => {
  it('exits 2 on bad usage, 0 for help, 2 with no command', async () => {
    const env = { XDG_CONFIG_HOME: path.join(tmpdir(), 'ferry-cli-usage-none'), FERRY_LAB_DIR: path.join(tmpdir(), 'ferry-cli-usage-none') };
    const bad = await runCli(['migrate', 'demo', '--from', 'a', '--to', 'b', '--foo'], env);
    expect(bad).toMatchObject({ code: 2, stdout: '', stderr: 'ferry: migrate: unknown option --foo\nferry: see ferry help migrate\n' });
    const help = await runCli(['help', 'timeline'], env);
    expect(help).toMatchObject({ code: 0, stderr: '' });
    expect(help.stdout).toMatch(/^usage:\n {2}ferry timeline FILE --csv\|--json\|--openmetrics\n/);
    expect((await runCli([], env)).code).toBe(2);
  }, 30_000);

  it('npm run serve (electron/serve.ts on its own) parses from the same table', () => {
    const r = spawnSync(process.execPath, ['--import', 'tsx', 'electron/serve.ts', '--port', 'abc'], { encoding: 'utf8', timeout: 20_000, env: { ...process.env, XDG_CONFIG_HOME: path.join(tmpdir(), 'ferry-cli-usage-none') } });
    expect({ status: r.status, stderr: r.stderr }).toEqual({ status: 2, stderr: 'ferry: serve: --port must be a port number from 0 to 65535\nferry: see ferry help serve\n' });
  }, 30_000);
});
