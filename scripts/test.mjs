// Sets up what the tests need, then runs every test runner the project has and ends with one
// line: "N passed, N failed, N skipped".
// Extra arguments go to vitest (e.g. `npm test -- --project unit`).
import { spawnSync } from 'node:child_process';
import { existsSync, mkdirSync, readFileSync, readdirSync, rmSync } from 'node:fs';
import path from 'node:path';

const root = path.resolve(import.meta.dirname, '..');
const tmp = path.join(root, '.tmp');
mkdirSync(tmp, { recursive: true });
const totals = { passed: 0, failed: 0, skipped: 0 };
let broken = false;

function run(cmd, args, env = {}) {
  const r = spawnSync(cmd, args, { cwd: root, stdio: 'inherit', env: { ...process.env, ...env } });
  return r.status ?? 1;
}

// 0. The set-up in tests mode: the Debian packages, the npm packages and what the tests assume
//    (/run/sshd), so that `npm test` runs on a fresh clone. It does nothing when all is there.
if (run(process.execPath, [path.join(root, 'scripts', 'setup.mjs'), 'tests']) !== 0) {
  console.log('0 passed, 1 failed, 0 skipped');
  process.exit(1);
}

// 1. vitest: the unit project, then the integration project (real QEMU, sshd) on its own so
//    that nothing else competes with its real processes for the two cores.
const extra = process.argv.slice(2);
const projects = extra.some((a) => a.startsWith('--project')) ? [[]] : [['--project', 'unit'], ['--project', 'int']];
for (const [i, sel] of projects.entries()) {
  const vitestJson = path.join(tmp, `vitest-${i}.json`);
  rmSync(vitestJson, { force: true });
  const code = run('npx', ['vitest', 'run', ...sel, '--reporter=default', '--reporter=json', `--outputFile.json=${vitestJson}`, ...extra]);
  if (existsSync(vitestJson)) {
    const r = JSON.parse(readFileSync(vitestJson, 'utf8'));
    totals.passed += r.numPassedTests;
    totals.failed += r.numFailedTests;
    totals.skipped += (r.numPendingTests ?? 0) + (r.numTodoTests ?? 0);
    if (code !== 0 && r.numFailedTests === 0) broken = true; // e.g. a suite failed to load
  } else {
    broken = true;
  }
}

// 2. Playwright end-to-end specs, once they exist
const specs = existsSync(path.join(root, 'e2e')) ? readdirSync(path.join(root, 'e2e'), { recursive: true }).filter((f) => String(f).endsWith('.spec.ts')) : [];
if (specs.length > 0 && process.argv.length <= 2) {
  // The browser mode serves the built renderer.
  if (run('npm', ['run', '-s', 'build:renderer']) !== 0) broken = true;
  const pwJson = path.join(tmp, 'playwright.json');
  rmSync(pwJson, { force: true });
  const code = run('npx', ['playwright', 'test', '--reporter=list,json'], { PLAYWRIGHT_JSON_OUTPUT_NAME: pwJson });
  if (existsSync(pwJson)) {
    const s = JSON.parse(readFileSync(pwJson, 'utf8')).stats;
    totals.passed += s.expected + (s.flaky ?? 0);
    totals.failed += s.unexpected;
    totals.skipped += s.skipped;
    if (code !== 0 && s.unexpected === 0) broken = true;
  } else {
    broken = true;
  }
}

if (broken) totals.failed = Math.max(totals.failed, 1);
console.log(`${totals.passed} passed, ${totals.failed} failed, ${totals.skipped} skipped`);
process.exit(totals.failed > 0 ? 1 : 0);
