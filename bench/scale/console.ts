/**
 * The console process of `bench scale`: Ferry's console service and browser server, as
 * `ferry serve` runs them, on the hosts the bench made (SCALE_HOSTS: a JSON file of
 * HostConfigs). Alone in its process, so that its CPU time and memory are Ferry's own.
 * Prints `READY <url>` once listening; takes one JSON command per line on stdin:
 * `{"migrate": {plan}}` -> `STARTED <id>`, `{"cancel": "<id>"}`, `{"quit": true}`.
 */
import { readFileSync } from 'node:fs';
import { createInterface } from 'node:readline';
import { ConsoleService } from '../../electron/core/console-service';
import { startBrowserServer } from '../../electron/core/browser-server';
import type { HostConfig } from '../../shared/model/host';
import type { MigrationPlanInput } from '../../shared/model/migration';

const hosts = JSON.parse(readFileSync(process.env.SCALE_HOSTS!, 'utf8')) as HostConfig[];
const service = new ConsoleService({ configDir: process.env.SCALE_CONFIG!, builtinHosts: hosts, labRoot: process.env.SCALE_CONFIG! });
const server = await startBrowserServer(service, { staticDir: process.env.SCALE_STATIC! });
process.stdout.write(`READY ${server.url}\n`);

const rl = createInterface({ input: process.stdin });
rl.on('line', (line) => {
  const cmd = JSON.parse(line) as { migrate?: MigrationPlanInput; cancel?: string; quit?: boolean };
  if (cmd.migrate) {
    service.engine.start(cmd.migrate).then(
      (m) => process.stdout.write(`STARTED ${m.id}\n`),
      (e: unknown) => process.stdout.write(`FAILED ${e instanceof Error ? e.message : String(e)}\n`),
    );
  } else if (cmd.cancel) {
    service.engine.get(cmd.cancel).control({ action: 'cancel' }).catch((e: unknown) => process.stdout.write(`NOTE cancel ${cmd.cancel}: ${e instanceof Error ? e.message : String(e)}\n`));
  } else if (cmd.quit) {
    void (async () => {
      await server.close();
      await service.dispose();
      process.exit(0);
    })();
  }
});
