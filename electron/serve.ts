/**
 * `npm run serve` / `ferry serve`: the console in a browser. Prints the URL (with its token).
 * The local lab is there from the first start; if this process starts it, it stops it on exit.
 */
import { existsSync } from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { ConsoleService } from './core/console-service';
import { labDown, labHosts } from './core/lab/local-lab';
import { startBrowserServer } from './core/browser-server';
import { MigrationMetrics } from './core/metrics/migration-metrics';
import { loadOrCreateMetricsToken, metricsTokenPath } from './core/metrics/metrics-http';
import { CliUsageError, commandSpec, helpFor, parseCommand, serveOptionsOf, usageErrorText } from './cli-commands';
import type { ServeOptions } from './cli-commands';

function staticDir(): string {
  const here = (() => {
    try {
      return path.dirname(fileURLToPath(import.meta.url));
    } catch {
      return __dirname;
    }
  })();
  for (const c of [path.join(here, '..', 'dist', 'renderer'), path.join(here, '..', 'renderer'), path.resolve('dist', 'renderer')]) {
    if (existsSync(path.join(c, 'index.html')) && !existsSync(path.join(c, 'main.tsx'))) return c;
  }
  return path.resolve('dist', 'renderer');
}

/** `ferry serve`'s arguments, parsed from the command table (bad usage throws CliUsageError). */
export function serveArgs(argv: string[]): ServeOptions | 'help' {
  const parsed = parseCommand(commandSpec('serve'), argv);
  return parsed.help ? 'help' : serveOptionsOf(parsed);
}

export async function serve({ port, metrics: withMetrics }: ServeOptions): Promise<void> {
  // FERRY_SSH_HOME: where ~/.ssh is looked up (tests and sandboxes use their own).
  const sshHome = process.env.FERRY_SSH_HOME;
  const service = new ConsoleService({ builtinHosts: () => labHosts(), recoverOnConnect: true, ...(sshHome ? { ssh: { homeDir: sshHome, agent: false } } : {}) });
  const dir = staticDir();
  if (!existsSync(path.join(dir, 'index.html'))) {
    process.stderr.write(`ferry serve: the console is not built (${dir}); run npm run build first\n`);
    process.exit(1);
  }
  // --metrics: Prometheus /metrics on the same port, with its own token (README, "Metrics").
  const metrics = withMetrics ? new MigrationMetrics(service) : undefined;
  const server = await startBrowserServer(service, {
    staticDir: dir, port,
    ...(metrics ? { metrics: { render: () => metrics.render(), token: loadOrCreateMetricsToken(service.configDir) } } : {}),
  });
  // Every configured host is connected; migrations a previous Ferry left running on any of
  // them are picked up and recorded to the end.
  void service.connectAll();
  // `ferry control` / `ferry migrations` in another shell act through this console.
  await service.listenForControl('ferry serve');
  process.stdout.write(`Ferry console: ${server.url}\n(listening on 127.0.0.1 only; the token in the URL is the key — Ctrl-C to stop)\n`);
  if (metrics) process.stdout.write(`Metrics: http://127.0.0.1:${server.port}/metrics (Authorization: Bearer <the token in ${metricsTokenPath(service.configDir)}>)\n`);
  let stopping = false;
  const stop = async () => {
    if (stopping) return;
    stopping = true;
    await server.close();
    metrics?.dispose();
    await service.dispose();
    if (service.labStartedHere) {
      const r = await labDown({ root: service.labRoot }).catch(() => ({ stopped: [] as string[] }));
      if (r.stopped.length) process.stdout.write(`stopped the lab: ${r.stopped.join(', ')}\n`);
    }
    process.exit(0);
  };
  process.on('SIGINT', () => void stop());
  process.on('SIGTERM', () => void stop());
}

const isEntry = process.argv[1] && /(?:^|[/\\])serve\.(?:ts|mjs)$/.test(process.argv[1]);
if (isEntry) {
  let options: ServeOptions | 'help' | undefined;
  try {
    options = serveArgs(process.argv.slice(2));
  } catch (e) {
    if (!(e instanceof CliUsageError)) throw e;
    process.stderr.write(usageErrorText(e.message, 'serve'));
    process.exitCode = 2;
  }
  if (options === 'help') process.stdout.write(helpFor(['serve']));
  else if (options) void serve(options);
}
