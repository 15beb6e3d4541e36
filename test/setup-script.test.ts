/** The set-up script's decisions: which packages are missing, and what it then runs or says. */
import { spawnSync } from 'node:child_process';
import { describe, expect, it } from 'vitest';
import {
  PACKAGES,
  absentFromEnv,
  electronFailure,
  electronPlan,
  electronUnavailable,
  logExcerpt,
  missingPackages,
  npmStale,
  packagesFor,
  systemPlan,
} from '../scripts/setup.mjs';

const debs = (mode: string) => packagesFor(mode).map((p: { deb: string }) => p.deb);

describe('package sets', () => {
  it('the tests need everything the console needs, and sshd, Chromium, the guest toolchain and the state tools', () => {
    const console_ = debs('console');
    const tests = debs('tests');
    expect(console_).toEqual(expect.arrayContaining(['qemu-system-x86', 'qemu-utils', 'openssh-client', 'socat', 'iproute2']));
    for (const p of console_) expect(tests).toContain(p);
    for (const p of ['openssh-server', 'chromium', 'gcc', 'make', 'binutils', 'gnupg', 'gzip', 'zstd', 'age', 'procps']) {
      expect(tests).toContain(p);
      expect(console_).not.toContain(p);
    }
    expect(new Set(PACKAGES.map((p: { deb: string }) => p.deb)).size).toBe(PACKAGES.length);
  });

  it('refuses an unknown mode', () => {
    expect(() => packagesFor('desktop')).toThrow(/unknown mode desktop/);
  });
});

describe('missing packages', () => {
  const wanted = packagesFor('console');

  it('asks dpkg where there is one, and keeps the table order', () => {
    const dpkg = new Set(['qemu-system-x86', 'openssh-client', 'iproute2']);
    expect(missingPackages(wanted, { dpkg, hasBin: () => true })).toEqual(['qemu-utils', 'socat']);
  });

  it('looks for the programs where there is no dpkg', () => {
    expect(missingPackages(wanted, { dpkg: undefined, hasBin: (b: string) => b !== 'ip' && b !== 'qemu-img' })).toEqual(['qemu-utils', 'iproute2']);
  });

  it('FERRY_SETUP_ABSENT makes installed packages count as missing (space or comma separated)', () => {
    const all = new Set(wanted.map((p: { deb: string }) => p.deb));
    expect(absentFromEnv(undefined).size).toBe(0);
    expect([...absentFromEnv(' socat, age  qemu-utils')]).toEqual(['socat', 'age', 'qemu-utils']);
    expect(missingPackages(wanted, { dpkg: all, hasBin: () => true, absent: absentFromEnv('socat,qemu-utils') })).toEqual(['qemu-utils', 'socat']);
    expect(missingPackages(wanted, { dpkg: all, hasBin: () => true })).toEqual([]);
  });
});

describe('what the set-up does about missing packages', () => {
  it('nothing when nothing is missing', () => {
    expect(systemPlan({ mode: 'tests', missing: [], root: false, apt: true })).toEqual({ action: 'none' });
  });

  it('as root with apt-get: one update, then one quiet install without recommends', () => {
    const plan = systemPlan({ mode: 'tests', missing: ['socat', 'age'], root: true, apt: true });
    if (plan.action !== 'install') throw new Error(`planned ${plan.action}`);
    expect(plan.say).toMatch(/^setup: installing socat age \(apt-get/);
    expect(plan.commands.map((c: string[]) => c.slice(0, 2))).toEqual([['apt-get', 'update'], ['apt-get', 'install']]);
    expect(plan.commands[1]).toEqual(expect.arrayContaining(['-y', '-qq', '--no-install-recommends']));
    expect(plan.commands[1]!.slice(-2)).toEqual(['socat', 'age']);
  });

  it('as another user: prints the exact sudo apt-get line and stops', () => {
    const plan = systemPlan({ mode: 'console', missing: ['qemu-system-x86', 'socat'], root: false, apt: true });
    if (plan.action !== 'tell') throw new Error(`planned ${plan.action}`);
    expect(plan.lines[0]).toMatch(/^setup: the console needs Debian packages that are not installed \(qemu-system-x86 socat\)/);
    expect(plan.lines.at(-1)).toBe('sudo apt-get install -y --no-install-recommends qemu-system-x86 socat');
  });

  it('as root without apt-get: says so, and gives the Debian line without sudo', () => {
    const plan = systemPlan({ mode: 'tests', missing: ['chromium'], root: true, apt: false });
    if (plan.action !== 'tell') throw new Error(`planned ${plan.action}`);
    expect(plan.lines[0]).toMatch(/tests need .*\(chromium\).*no apt-get here/);
    expect(plan.lines.at(-1)).toBe('apt-get install -y --no-install-recommends chromium');
  });

  it('run as a user other than root with packages reported missing, the script prints the line and exits 1', () => {
    // As root this runs it as nobody: the non-root path, on the real script, with the real dpkg.
    const asNobody = process.getuid?.() === 0 ? { uid: 65534, gid: 65534 } : {};
    const r = spawnSync(process.execPath, ['scripts/setup.mjs', 'tests'], {
      encoding: 'utf8',
      env: { PATH: process.env.PATH, FERRY_SETUP_ABSENT: 'socat age' },
      ...asNobody,
    });
    expect(r.status).toBe(1);
    const lines = r.stdout.trimEnd().split('\n');
    const line = lines.at(-1)!;
    expect(line).toMatch(/^sudo apt-get install -y --no-install-recommends( [a-z0-9.+-]+)+$/);
    const named = line.split(' ').slice(5);
    expect(named).toEqual(expect.arrayContaining(['socat', 'age']));
    for (const p of named) expect(debs('tests')).toContain(p);
    expect(lines.at(-2)).toMatch(/^setup: the tests need Debian packages that are not installed/);
  });
});

describe('npm packages', () => {
  type Entry = { version?: string; name?: string; optional?: boolean; dev?: boolean; dependencies?: Record<string, string> };
  const lock: { packages: Record<string, Entry> } = {
    packages: {
      '': { name: 'ferry', dependencies: { a: '^1' } },
      'node_modules/a': { version: '1.2.0' },
      'node_modules/a/node_modules/b': { version: '2.0.0' },
      'node_modules/@esbuild/darwin-arm64': { version: '0.28.2', optional: true },
      'node_modules/fsevents': { version: '2.3.3', dev: true, optional: true },
    },
  };
  const installed = {
    packages: {
      'node_modules/a': { version: '1.2.0' },
      'node_modules/a/node_modules/b': { version: '2.0.0' },
    },
  };
  const exists = () => true;

  it('fresh when npm installed what the lock lists (optional packages of other platforms aside)', () => {
    expect(npmStale({ lock, installed, exists })).toBeUndefined();
  });

  it('stale when node_modules is missing, or has no record of what npm installed', () => {
    expect(npmStale({ lock, installed: undefined, exists: () => false })).toBe('node_modules is missing');
    expect(npmStale({ lock, installed: undefined, exists })).toMatch(/no record/);
  });

  it('stale when the lock moved a version, added a package, or dropped one', () => {
    const moved = structuredClone(lock);
    moved.packages['node_modules/a/node_modules/b']!.version = '2.1.0';
    expect(npmStale({ lock: moved, installed, exists })).toBe('b is 2.0.0, package-lock.json says 2.1.0');
    const added = structuredClone(lock);
    added.packages['node_modules/c'] = { version: '3.0.0' };
    expect(npmStale({ lock: added, installed, exists })).toBe('c is not installed');
    const dropped = structuredClone(lock);
    delete dropped.packages['node_modules/a/node_modules/b'];
    expect(npmStale({ lock: dropped, installed, exists })).toMatch(/^b is installed but not in package-lock.json/);
  });

  it('stale when a package folder was removed behind npm’s back', () => {
    expect(npmStale({ lock, installed, exists: (d: string) => d !== 'node_modules/a' })).toBe('node_modules/a was removed');
  });
});

describe('the Electron binary', () => {
  const base = { version: '39.8.10', binaryPresent: false, skipEnv: false, markVersion: undefined, retry: false };

  it('fetched when absent, once per version: a failure is remembered until a new electron or --retry-electron', () => {
    expect(electronPlan(base)).toBe('fetch');
    expect(electronPlan({ ...base, binaryPresent: true })).toBe('have');
    expect(electronPlan({ ...base, markVersion: '39.8.10' })).toBe('skip');
    expect(electronPlan({ ...base, markVersion: '39.8.9' })).toBe('fetch');
    expect(electronPlan({ ...base, markVersion: '39.8.10', retry: true })).toBe('fetch');
    expect(electronPlan({ ...base, skipEnv: true })).toBe('skip');
    expect(electronPlan({ ...base, version: undefined })).toBe('skip');
  });

  it('one line with the reason: the first error line, or the timeout', () => {
    const stderr = 'RequestError: getaddrinfo ENOTFOUND github.com\n    at ClientRequest.<anonymous> (/x/got/index.js:970:111)\n';
    expect(electronFailure({ status: 1, signal: null, stderr, timeoutS: 180 })).toBe('RequestError: getaddrinfo ENOTFOUND github.com');
    expect(electronFailure({ status: null, signal: 'SIGKILL', stderr: '', timeoutS: 180 })).toBe('no answer within 180 s');
    expect(electronFailure({ status: 3, signal: null, stderr: '', timeoutS: 180 })).toBe('its install script exited with 3');
    const line = electronUnavailable('RequestError: getaddrinfo ENOTFOUND github.com');
    expect(line.split('\n')).toHaveLength(1);
    expect(line).toMatch(/desktop app .*unavailable here.*browser mode \(npm run serve\) works/);
  });
});

describe('a failed command, in a few lines', () => {
  it("shows npm's and apt's first error lines, not the usage text that follows", () => {
    const npm = ['$ npm ci', 'npm warn EBADENGINE Unsupported engine {', 'npm error code EUSAGE', 'npm error', 'npm error `npm ci` can only install packages when your package.json and package-lock.json are in sync.', 'npm error Missing: left-pad@1.3.0 from lock file', 'npm error', 'npm error Clean install a project', 'npm error Usage:', 'npm error npm ci'].join('\n');
    expect(logExcerpt(npm, 3).split('\n')).toEqual(['  npm error code EUSAGE', '  npm error `npm ci` can only install packages when your package.json and package-lock.json are in sync.', '  npm error Missing: left-pad@1.3.0 from lock file']);
    expect(logExcerpt('$ apt-get install -y -qq nope\nE: Unable to locate package nope\n')).toBe('  E: Unable to locate package nope');
    expect(logExcerpt('a\nb\nc\nd\n', 2)).toBe('  c\n  d');
  });
});
