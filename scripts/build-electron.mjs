// Bundles the Electron main process, preload, browser-mode server and CLI with esbuild.
import { build } from 'esbuild';

const common = {
  bundle: true,
  platform: 'node',
  target: 'node20',
  sourcemap: true,
  external: ['electron', 'ssh2', 'cpu-features'],
  logLevel: 'warning',
};

await Promise.all([
  build({ ...common, entryPoints: ['electron/main.ts'], outfile: 'dist/electron/main.cjs', format: 'cjs' }),
  build({ ...common, entryPoints: ['electron/preload.ts'], outfile: 'dist/electron/preload.cjs', format: 'cjs' }),
  build({ ...common, entryPoints: ['electron/serve.ts'], outfile: 'dist/electron/serve.mjs', format: 'esm' }),
  build({ ...common, entryPoints: ['electron/cli.ts'], outfile: 'dist/electron/cli.mjs', format: 'esm' }),
]);
console.log('built dist/electron/{main,preload}.cjs, serve.mjs, cli.mjs');
