// `npm run dist`: packages with electron-builder where Electron can be downloaded. Here (only
// the npm registry and Debian are reachable) the download fails, and this says so plainly.
import { spawnSync } from 'node:child_process';

const build = spawnSync('npm', ['run', '-s', 'build'], { stdio: 'inherit' });
if (build.status !== 0) process.exit(build.status ?? 1);
const r = spawnSync('npx', ['electron-builder', '--config', 'electron-builder.yml', ...process.argv.slice(2)], { encoding: 'utf8' });
process.stdout.write(r.stdout ?? '');
process.stderr.write(r.stderr ?? '');
if (r.status !== 0) {
  const out = `${r.stdout}\n${r.stderr}`;
  if (/github\.com|ENOTFOUND|EAI_AGAIN|ECONNREFUSED|getaddrinfo|download/i.test(out)) {
    console.error('\nferry dist: packaging failed because the Electron binary could not be downloaded from this machine (only the npm registry and Debian packages are reachable here). Run npm run dist where GitHub is reachable.');
  }
  process.exit(r.status ?? 1);
}
