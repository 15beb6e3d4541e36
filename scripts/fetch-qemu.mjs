#!/usr/bin/env node
// Fetches QEMU 10.0 from Debian's bookworm-backports beside the system's QEMU, into the work
// tree: `.cache/qemu/<version>/` holds the extracted packages (usr/bin/qemu-system-x86_64,
// usr/share/qemu for `-L`). Idempotent: a cached copy that runs is reused at once.
// apt works on a sources list, lists dir and cache of its own (nothing of the system's apt
// state is touched); `apt-get download` + `dpkg -x` need no root and install nothing.
//
//   node scripts/fetch-qemu.mjs            fetch if needed; prints the binary's path
//   node scripts/fetch-qemu.mjs --json     prints {"version","binary","dataDir"}
//   node scripts/fetch-qemu.mjs --check    exit 0 when cached and runnable, 1 otherwise; fetches nothing
//
// On failure: one line on stderr saying what failed, exit 1.
import { spawnSync } from 'node:child_process';
import { existsSync, mkdirSync, readdirSync, renameSync, rmSync, writeFileSync } from 'node:fs';
import path from 'node:path';

const VERSION = '10.0';
const SUITE = 'bookworm-backports';
const MIRROR = process.env.FERRY_DEBIAN_MIRROR ?? 'http://deb.debian.org/debian';
const PACKAGES = ['qemu-system-x86', 'qemu-system-common', 'qemu-system-data'];
const KEYRING = '/usr/share/keyrings/debian-archive-keyring.gpg';

const root = path.resolve(import.meta.dirname, '..');
const cacheBase = path.join(root, '.cache', 'qemu');
const args = process.argv.slice(2);
const json = args.includes('--json');
const checkOnly = args.includes('--check');

function fail(message) {
  process.stderr.write(`fetch-qemu: ${message}\n`);
  process.exit(1);
}

function run(cmd, argv, options = {}) {
  const r = spawnSync(cmd, argv, { encoding: 'utf8', timeout: options.timeoutMs ?? 300_000, cwd: options.cwd, env: { ...process.env, LC_ALL: 'C' } });
  if (r.error) return { ok: false, why: `${cmd}: ${r.error.message}`, stdout: '' };
  if (r.status === 0) return { ok: true, stdout: `${r.stdout}\n${r.stderr}` };
  if (r.status !== 0) {
    const last = `${r.stderr}\n${r.stdout}`.split('\n').map((l) => l.trim()).filter(Boolean).filter((l) => !/^W: /.test(l)).at(-1) ?? `exit ${r.status}`;
    return { ok: false, why: `${cmd} ${argv.filter((a) => !a.startsWith('-o') && !a.includes('::')).slice(0, 2).join(' ')}: ${last}`, stdout: r.stdout };
  }
  return { ok: true, stdout: r.stdout };
}

/** A folder's QEMU if it runs: its version line's x.y.z. */
function versionIn(dir) {
  const bin = path.join(dir, 'usr', 'bin', 'qemu-system-x86_64');
  if (!existsSync(bin)) return undefined;
  const r = run(bin, ['--version'], { timeoutMs: 20_000 });
  return r.ok ? /version (\d+\.\d+\.\d+)/.exec(r.stdout)?.[1] : undefined;
}

function report(dir, version) {
  const binary = path.join(dir, 'usr', 'bin', 'qemu-system-x86_64');
  const dataDir = path.join(dir, 'usr', 'share', 'qemu');
  process.stdout.write(json ? `${JSON.stringify({ version, binary, dataDir })}\n` : `${binary}\n`);
  process.exit(0);
}

// Cached: `.cache/qemu/10.0.x/` whose binary runs and says 10.0.x.
if (existsSync(cacheBase)) {
  for (const d of readdirSync(cacheBase).filter((n) => n.startsWith(`${VERSION}.`)).sort().reverse()) {
    const v = versionIn(path.join(cacheBase, d));
    if (v === d) report(path.join(cacheBase, d), v);
  }
}
if (checkOnly) fail(`no runnable QEMU ${VERSION} in ${cacheBase}`);

for (const tool of ['apt-get', 'dpkg']) {
  if (!run(tool, ['--version'], { timeoutMs: 20_000 }).ok) fail(`${tool} is needed to fetch QEMU ${VERSION} from ${SUITE} and is not installed`);
}
if (!existsSync(KEYRING)) fail(`${KEYRING} is missing (package debian-archive-keyring)`);

const work = path.join(cacheBase, `.fetch-${process.pid}`);
rmSync(work, { recursive: true, force: true });
const cleanup = () => rmSync(work, { recursive: true, force: true });
process.on('exit', cleanup);
for (const d of ['lists/partial', 'archives/partial', 'debs', 'tree', 'etc/preferences.d', 'etc/sources.list.d']) mkdirSync(path.join(work, d), { recursive: true });
const sources = path.join(work, 'etc', 'sources.list');
writeFileSync(sources, `deb [signed-by=${KEYRING}] ${MIRROR} ${SUITE} main\n`);
// Only our own list, lists dir, cache and (empty) preferences: the system's apt state stays as it is.
const apt = [
  '-o', `Dir::Etc::sourcelist=${sources}`,
  '-o', `Dir::Etc::sourceparts=${path.join(work, 'etc', 'sources.list.d')}`,
  '-o', `Dir::Etc::preferencesparts=${path.join(work, 'etc', 'preferences.d')}`,
  '-o', `Dir::State::Lists=${path.join(work, 'lists')}`,
  '-o', `Dir::Cache=${work}`,
  '-o', `Dir::Cache::archives=${path.join(work, 'archives')}`,
  '-o', 'APT::Sandbox::User=root',
  '-o', 'Acquire::Retries=3',
  '-q',
];
let r = run('apt-get', [...apt, 'update']);
if (!r.ok) fail(`apt-get update of ${SUITE} failed: ${r.why}`);
// apt-get update only warns when the mirror cannot be reached: no Packages list means it was not.
if (!readdirSync(path.join(work, 'lists')).some((f) => f.includes(SUITE) && f.includes('Packages'))) {
  const warning = `${r.stdout}`.split('\n').find((l) => /^(W|E|Err):?/.test(l.trim()))?.trim();
  fail(`cannot fetch the package lists of ${SUITE} from ${MIRROR}${warning ? `: ${warning}` : ''}`);
}
r = run('apt-get', [...apt, 'download', ...PACKAGES.map((p) => `${p}/${SUITE}`)], { cwd: path.join(work, 'debs') });
if (!r.ok) fail(`apt-get download ${PACKAGES.join(' ')} from ${SUITE} failed: ${r.why}`);
const debs = readdirSync(path.join(work, 'debs')).filter((f) => f.endsWith('.deb'));
if (debs.length !== PACKAGES.length) fail(`expected ${PACKAGES.length} packages from ${SUITE}, got ${debs.join(', ') || 'none'}`);
for (const deb of debs) {
  r = run('dpkg', ['-x', path.join(work, 'debs', deb), path.join(work, 'tree')]);
  if (!r.ok) fail(`dpkg -x ${deb} failed: ${r.why}`);
}
const version = versionIn(path.join(work, 'tree'));
if (!version) {
  const bin = path.join(work, 'tree', 'usr', 'bin', 'qemu-system-x86_64');
  const why = existsSync(bin) ? run(bin, ['--version']).why : 'no usr/bin/qemu-system-x86_64 in the packages';
  fail(`the QEMU from ${SUITE} does not run here: ${why}`);
}
if (!version.startsWith(`${VERSION}.`)) fail(`${SUITE} served QEMU ${version}, not ${VERSION}.x`);
const dest = path.join(cacheBase, version);
rmSync(dest, { recursive: true, force: true });
renameSync(path.join(work, 'tree'), dest);
writeFileSync(path.join(dest, 'packages.txt'), `${debs.sort().join('\n')}\n`);
report(dest, version);
