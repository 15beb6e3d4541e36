#!/usr/bin/env node
// The set-up of a fresh clone: `npm run setup` (the console) or `npm run setup -- tests` (every
// test). It runs before node_modules exists, so it uses Node's built-ins only. It installs what
// is missing and does nothing else: a second run takes well under a second.
//
//   1. Debian packages: as root with apt-get, installs the missing ones; otherwise prints the
//      exact `apt-get install` line and stops (exit 1).
//   2. What the tests assume beyond packages: /run/sshd (sshd refuses to start without it).
//   3. npm packages: `npm ci` when node_modules is missing or differs from package-lock.json,
//      with ELECTRON_SKIP_BINARY_DOWNLOAD=1 (electron's postinstall would otherwise abort the
//      whole install where its binary cannot be downloaded).
//   4. The Electron binary, fetched separately by electron's own install script with a timeout;
//      where that fails one line says so and the set-up goes on (the browser mode works).
//   5. Tests only: `node scripts/fetch-qemu.mjs` when that script exists (extra test assets).
//
// FERRY_SETUP_ABSENT="pkg pkg" treats those packages as not installed: for tests of this script.
import { spawnSync } from 'node:child_process';
import { closeSync, existsSync, mkdirSync, openSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { parseArgs } from 'node:util';

/**
 * Every Debian package Ferry needs, one a line: `for` says which mode needs it (the tests need
 * everything the console needs, and more); `bin` is a program it installs, looked for on PATH
 * where there is no dpkg to ask.
 */
export const PACKAGES = [
  { deb: 'qemu-system-x86', bin: 'qemu-system-x86_64', for: 'console' },
  { deb: 'qemu-utils', bin: 'qemu-img', for: 'console' },
  { deb: 'openssh-client', bin: 'ssh', for: 'console' },
  { deb: 'socat', bin: 'socat', for: 'console' },
  { deb: 'iproute2', bin: 'ip', for: 'console' },
  { deb: 'openssh-server', bin: 'sshd', for: 'tests' },
  { deb: 'chromium', bin: 'chromium', for: 'tests' },
  { deb: 'gcc', bin: 'gcc', for: 'tests' },
  { deb: 'make', bin: 'make', for: 'tests' },
  { deb: 'binutils', bin: 'objcopy', for: 'tests' },
  { deb: 'gnupg', bin: 'gpg', for: 'tests' },
  { deb: 'gzip', bin: 'gzip', for: 'tests' },
  { deb: 'zstd', bin: 'zstd', for: 'tests' },
  { deb: 'age', bin: 'age', for: 'tests' },
  { deb: 'procps', bin: 'ps', for: 'tests' },
  // promtool imports the OpenMetrics export in a test (the server itself is never started)
  { deb: 'prometheus', bin: 'promtool', for: 'tests' },
  // the libvirt lab: two daemons in their own mount namespaces (never the system's own service)
  { deb: 'libvirt-daemon-system', bin: 'libvirtd', for: 'tests' },
  { deb: 'libvirt-clients', bin: 'virsh', for: 'tests' },
];

/** What each mode needs: the `for` values it takes from PACKAGES. */
export const MODES = { console: ['console'], tests: ['console', 'tests'] };

const ROOT = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..');
const LOG = path.join(ROOT, '.tmp', 'setup.log');
const ELECTRON_TIMEOUT_S = 180;
/** Written into node_modules (so a fresh `npm ci` forgets it): the Electron binary could not be fetched. */
const ELECTRON_MARK = path.join(ROOT, 'node_modules', '.ferry-electron-unavailable.json');

/** The packages `mode` needs, in table order. */
export function packagesFor(mode) {
  const sets = MODES[mode];
  if (!sets) throw new Error(`unknown mode ${mode}: console or tests`);
  return PACKAGES.filter((p) => sets.includes(p.for));
}

/** FERRY_SETUP_ABSENT's package names (space or comma separated). */
export function absentFromEnv(value) {
  return new Set((value ?? '').split(/[\s,]+/).filter(Boolean));
}

/**
 * The packages of `wanted` that are missing. `dpkg` is the set dpkg reports installed, or
 * undefined where there is no dpkg (then `hasBin` decides); `absent` overrides both.
 */
export function missingPackages(wanted, { dpkg, hasBin, absent = new Set() }) {
  return wanted.filter((p) => absent.has(p.deb) || (dpkg ? !dpkg.has(p.deb) : !hasBin(p.bin))).map((p) => p.deb);
}

/**
 * What to do about missing Debian packages: nothing, install them (root with apt-get: the
 * commands to run, in order), or tell the user the line to run and stop.
 * @returns {{ action: 'none' } | { action: 'install', say: string, commands: string[][] } | { action: 'tell', lines: string[] }}
 */
export function systemPlan({ mode, missing, root, apt }) {
  if (missing.length === 0) return { action: 'none' };
  const install = ['apt-get', 'install', '-y', '--no-install-recommends', ...missing];
  if (root && apt) {
    const lock = ['-o', 'DPkg::Lock::Timeout=300'];
    return {
      action: 'install',
      say: `setup: installing ${missing.join(' ')} (apt-get; log in ${path.relative(ROOT, LOG)})`,
      commands: [
        ['apt-get', 'update', '-qq', ...lock],
        ['apt-get', 'install', '-y', '-qq', '--no-install-recommends', ...lock, ...missing],
      ],
    };
  }
  const needs = `setup: the ${mode === 'tests' ? 'tests need' : 'console needs'} Debian packages that are not installed (${missing.join(' ')})`;
  const lines = [
    apt ? `${needs}; install them, then run the set-up again:` : `${needs}, and there is no apt-get here: install their equivalents, then run the set-up again; on Debian:`,
    `${root ? '' : 'sudo '}${install.join(' ')}`,
  ];
  return { action: 'tell', lines };
}

/**
 * Why node_modules needs `npm ci`, or undefined when it matches package-lock.json. `lock` and
 * `installed` are the parsed package-lock.json and node_modules/.package-lock.json (npm's own
 * record of what it installed; undefined when absent); `exists(dir)` says a package folder is there.
 */
export function npmStale({ lock, installed, exists }) {
  if (!installed) return exists('node_modules') ? 'node_modules has no record of what npm installed' : 'node_modules is missing';
  const want = lock.packages ?? {};
  const have = installed.packages ?? {};
  for (const [dir, p] of Object.entries(want)) {
    if (dir === '' || p.link) continue;
    const got = have[dir];
    if (!got) {
      // Optional packages for other platforms (e.g. @esbuild/darwin-arm64) are never installed.
      if (p.optional || p.devOptional) continue;
      return `${dir.replace(/^.*node_modules\//, '')} is not installed`;
    }
    if (got.version !== p.version) return `${dir.replace(/^.*node_modules\//, '')} is ${got.version}, package-lock.json says ${p.version}`;
    if (!exists(dir)) return `${dir} was removed`;
  }
  for (const dir of Object.keys(have)) {
    if (!(dir in want)) return `${dir.replace(/^.*node_modules\//, '')} is installed but not in package-lock.json`;
  }
  return undefined;
}

/**
 * Whether to fetch the Electron binary: 'have' (it is there), 'skip' (the user set
 * ELECTRON_SKIP_BINARY_DOWNLOAD, or it failed before for this version), or 'fetch'.
 */
export function electronPlan({ version, binaryPresent, skipEnv, markVersion, retry }) {
  if (!version) return 'skip'; // electron is not among the npm packages
  if (binaryPresent) return 'have';
  if (skipEnv) return 'skip';
  if (markVersion === version && !retry) return 'skip';
  return 'fetch';
}

/** The one reason to show from electron's failed install script: its first error line. */
export function electronFailure({ status, signal, stderr, timeoutS }) {
  if (signal) return `no answer within ${timeoutS} s`;
  const line = stderr.split('\n').map((l) => l.trim()).find((l) => /^\w*Error\b|^Error:/.test(l)) ?? stderr.split('\n').map((l) => l.trim()).find(Boolean);
  return line ? line.slice(0, 160) : `its install script exited with ${status}`;
}

export const electronUnavailable = (reason) =>
  `setup: the Electron binary could not be fetched (${reason}): the desktop app (npm start) is unavailable here; the browser mode (npm run serve) works`;

// ---------------------------------------------------------------------------------------------

function onPath(bin) {
  const dirs = [...(process.env.PATH ?? '').split(':'), '/usr/sbin', '/sbin'];
  return dirs.some((d) => d && existsSync(path.join(d, bin)));
}

/** The Debian packages dpkg reports installed among `names`, or undefined without dpkg. */
function dpkgInstalled(names) {
  if (!onPath('dpkg-query')) return undefined;
  // Unknown names make dpkg-query exit 1 and complain on stderr; the known ones are still listed.
  const r = spawnSync('dpkg-query', ['-W', '-f=${Package}\t${db:Status-Status}\n', '--', ...names], { encoding: 'utf8' });
  if (r.error) return undefined;
  return new Set(r.stdout.split('\n').map((l) => l.split('\t')).filter(([, s]) => s === 'installed').map(([n]) => n));
}

const readJson = (file) => (existsSync(file) ? JSON.parse(readFileSync(file, 'utf8')) : undefined);

let logStarted = false;

/** Runs argv with its output in the log (this run's only); returns the exit status. */
function logged(argv, env = {}) {
  mkdirSync(path.dirname(LOG), { recursive: true });
  const fd = openSync(LOG, logStarted ? 'a' : 'w');
  logStarted = true;
  try {
    writeFileSync(fd, `\n$ ${argv.join(' ')}\n`);
    const r = spawnSync(argv[0], argv.slice(1), { cwd: ROOT, stdio: ['ignore', fd, fd], env: { ...process.env, ...env } });
    return r.error ? 127 : (r.status ?? 1);
  } finally {
    closeSync(fd);
  }
}

/** What to show of the log when a command failed: its first error lines (npm's and apt's), else its end. */
export function logExcerpt(text, n = 5) {
  const lines = text.trimEnd().split('\n');
  const errors = lines.filter((l) => /^(npm error|npm ERR!|E:)/.test(l) && l.replace(/^(npm error|npm ERR!)/, '').trim() !== '');
  return (errors.length > 0 ? errors.slice(0, n) : lines.slice(-n)).map((l) => `  ${l}`).join('\n');
}

const logTail = () => logExcerpt(existsSync(LOG) ? readFileSync(LOG, 'utf8') : '');

class SetupError extends Error {}

function systemPackages(mode) {
  const wanted = packagesFor(mode);
  const absent = absentFromEnv(process.env.FERRY_SETUP_ABSENT);
  const check = () => missingPackages(wanted, { dpkg: dpkgInstalled(wanted.map((p) => p.deb)), hasBin: onPath, absent });
  const plan = systemPlan({ mode, missing: check(), root: process.getuid?.() === 0, apt: onPath('apt-get') });
  if (plan.action === 'none') return;
  if (plan.action === 'tell') {
    for (const l of plan.lines) console.log(l);
    throw new SetupError();
  }
  console.log(plan.say);
  for (const argv of plan.commands) {
    const code = logged(argv, { DEBIAN_FRONTEND: 'noninteractive' });
    if (code !== 0) throw new SetupError(`${argv.slice(0, 2).join(' ')} failed (exit ${code}); from ${path.relative(ROOT, LOG)}:\n${logTail()}`);
  }
  const still = absent.size === 0 ? check() : [];
  if (still.length > 0) throw new SetupError(`apt-get did not install ${still.join(' ')}`);
}

function testAssumptions() {
  // sshd refuses to start without its privilege-separation directory; systemd makes it, a
  // container or a fresh machine without a running sshd has none.
  if (existsSync('/run/sshd')) return;
  try {
    mkdirSync('/run/sshd', { recursive: true, mode: 0o755 });
  } catch (e) {
    throw new SetupError(`the tests need /run/sshd and it cannot be made here (${e.code}): sudo mkdir -p -m 755 /run/sshd`);
  }
}

function npmPackages() {
  const lock = readJson(path.join(ROOT, 'package-lock.json'));
  if (!lock) throw new SetupError('package-lock.json is missing: the set-up installs exactly what it lists');
  const reason = npmStale({ lock, installed: readJson(path.join(ROOT, 'node_modules', '.package-lock.json')), exists: (d) => existsSync(path.join(ROOT, d)) });
  if (!reason) return;
  console.log(`setup: installing the npm packages (npm ci: ${reason}; log in ${path.relative(ROOT, LOG)})`);
  const code = logged(['npm', 'ci', '--no-audit', '--no-fund'], { ELECTRON_SKIP_BINARY_DOWNLOAD: '1' });
  if (code !== 0) throw new SetupError(`npm ci failed (exit ${code}); from ${path.relative(ROOT, LOG)}:\n${logTail()}`);
}

/** Returns whether the desktop app can run here. */
function electronBinary(retry) {
  const dir = path.join(ROOT, 'node_modules', 'electron');
  const version = readJson(path.join(dir, 'package.json'))?.version;
  const pathTxt = path.join(dir, 'path.txt');
  const binaryPresent = existsSync(pathTxt) && existsSync(path.join(dir, 'dist', readFileSync(pathTxt, 'utf8').trim()));
  const plan = electronPlan({ version, binaryPresent, skipEnv: Boolean(process.env.ELECTRON_SKIP_BINARY_DOWNLOAD), markVersion: readJson(ELECTRON_MARK)?.version, retry });
  if (plan !== 'fetch') return plan === 'have';
  const env = { ...process.env };
  delete env.ELECTRON_SKIP_BINARY_DOWNLOAD;
  const r = spawnSync(process.execPath, ['install.js'], { cwd: dir, env, encoding: 'utf8', timeout: ELECTRON_TIMEOUT_S * 1000, killSignal: 'SIGKILL' });
  if (r.status === 0 && existsSync(pathTxt)) {
    rmSync(ELECTRON_MARK, { force: true });
    console.log('setup: fetched the Electron binary: `npm start` opens the desktop app');
    return true;
  }
  const reason = electronFailure({ status: r.status, signal: r.signal, stderr: r.stderr ?? String(r.error ?? ''), timeoutS: ELECTRON_TIMEOUT_S });
  writeFileSync(ELECTRON_MARK, `${JSON.stringify({ version, reason, at: new Date().toISOString() })}\n`);
  console.log(electronUnavailable(reason));
  return false;
}

function testAssets() {
  const script = path.join(ROOT, 'scripts', 'fetch-qemu.mjs');
  if (!existsSync(script)) return;
  const r = spawnSync(process.execPath, [script], { cwd: ROOT, stdio: 'inherit' });
  if (r.status !== 0) throw new SetupError(`scripts/fetch-qemu.mjs failed (exit ${r.status ?? r.signal})`);
}

function main() {
  const usage = 'usage: node scripts/setup.mjs [console|tests] [--retry-electron]';
  let args;
  try {
    args = parseArgs({ allowPositionals: true, options: { 'retry-electron': { type: 'boolean' }, help: { type: 'boolean', short: 'h' } } });
  } catch (e) {
    console.error(`setup: ${e.message.split('.')[0]} (${usage})`);
    return 2;
  }
  if (args.values.help) {
    console.log(usage);
    return 0;
  }
  const mode = args.positionals[0] ?? 'console';
  if (!(mode in MODES) || args.positionals.length > 1) {
    console.error(`setup: ${mode in MODES ? `one mode only, not ${args.positionals.join(' ')}` : `unknown mode ${mode}: console or tests`} (${usage})`);
    return 2;
  }
  try {
    systemPackages(mode);
    if (mode === 'tests') testAssumptions();
    npmPackages();
    const desktop = electronBinary(Boolean(args.values['retry-electron']));
    if (mode === 'tests') testAssets();
    console.log(`setup: ready for the ${mode === 'tests' ? 'tests' : 'console'}${desktop ? '' : ' (browser mode only: no Electron binary)'}`);
    return 0;
  } catch (e) {
    if (!(e instanceof SetupError)) throw e;
    if (e.message) console.log(`setup: ${e.message}`);
    return 1;
  }
}

if (process.argv[1] && path.resolve(process.argv[1]) === fileURLToPath(import.meta.url)) process.exitCode = main();
