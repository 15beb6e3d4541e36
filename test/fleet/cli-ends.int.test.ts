/**
 * Every `ferry` command ends, with its exit code and a one-line reason, whatever fails on
 * the way to a real SSH host: refused host keys, failed authentication, an unreachable host
 * or jump host. Nothing Ferry opened may keep the process alive.
 */
import { afterAll, beforeAll, beforeEach, describe, expect, it } from 'vitest';
import { mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { fleetAvailable, startFleet } from '../support/fleet';
import type { Fleet } from '../support/fleet';
import { runCli } from '../support/cli';
import type { CliRun } from '../support/cli';

const avail = fleetAvailable();
if (!avail.ok) console.log(`[fleet] CLI exit tests skipped: ${avail.reason}`);

describe.skipIf(!avail.ok)('every CLI command ends when the SSH host refuses or cannot be reached', () => {
  let fleet: Fleet;
  let cfg: string;
  let env: Record<string, string>;
  let knownHosts: string;
  let sshConfig: string;
  let goodKnown: string;
  let goodConfig: string;
  let goodAuthorized: string;
  const authorized = () => path.join(fleet.hv1.root, 'authorized_keys');

  beforeAll(async () => {
    fleet = await startFleet();
    cfg = mkdtempSync(path.join(tmpdir(), 'ferry-cli-ends-'));
    mkdirSync(path.join(cfg, 'ferry'));
    writeFileSync(path.join(cfg, 'ferry', 'hosts.json'), JSON.stringify({ version: 1, hosts: fleet.hostConfigs() }));
    env = { HOME: fleet.home, XDG_CONFIG_HOME: cfg, FERRY_LAB_DIR: path.join(cfg, 'lab') };
    knownHosts = path.join(fleet.home, '.ssh', 'known_hosts');
    sshConfig = path.join(fleet.home, '.ssh', 'config');
    goodKnown = readFileSync(knownHosts, 'utf8');
    goodConfig = readFileSync(sshConfig, 'utf8');
    goodAuthorized = readFileSync(authorized(), 'utf8');
  });

  beforeEach(() => {
    writeFileSync(knownHosts, goodKnown);
    writeFileSync(sshConfig, goodConfig);
    writeFileSync(authorized(), goodAuthorized);
  });

  afterAll(async () => {
    await fleet?.stop();
    if (cfg) rmSync(cfg, { recursive: true, force: true });
  });

  const expectEnded = (r: CliRun, message: RegExp) => {
    // Killed at the limit means it hung: code null.
    expect(r.code, `stderr: ${r.stderr}`).toBe(1);
    expect(r.stderr.trim().split('\n')).toHaveLength(1);
    expect(r.stderr).toMatch(message);
  };

  it('an unknown host key: migrate, preflight and vm list each end with the fingerprint', async () => {
    writeFileSync(knownHosts, goodKnown.split('\n').filter((l) => !l.startsWith(`${fleet.hv1.sshAddress} `)).join('\n'));
    for (const args of [['migrate', 'demo', '--from', 'hv1', '--to', 'hv2'], ['vm', 'list', 'hv1']]) {
      expectEnded(await runCli(args, env), /unknown host key ssh-ed25519 SHA256:[A-Za-z0-9+/]{43}.*\[SSH_HOST_KEY_UNKNOWN\]/);
    }
    const pre = await runCli(['preflight', 'demo', '--from', 'hv1', '--to', 'hv2'], env);
    expect(pre.code).toBe(1);
    expect(pre.stdout).toMatch(/FAIL\s+Source host reachable: .*unknown host key/);
  });

  it('a changed host key ends naming both fingerprints', async () => {
    const [type, b64] = fleet.hv2.hostKeyPub.split(/\s+/);
    writeFileSync(knownHosts, goodKnown.replace(new RegExp(`^${fleet.hv1.sshAddress.replace(/\./g, '\\.')} .*$`, 'm'), `${fleet.hv1.sshAddress} ${type} ${b64}`));
    expectEnded(await runCli(['migrate', 'demo', '--from', 'hv1', '--to', 'hv2'], env), /HOST KEY CHANGED: now ssh-ed25519 SHA256:\S+, known as ssh-ed25519 SHA256:\S+.*\[SSH_HOST_KEY_CHANGED\]/);
  });

  it('a refused authentication ends naming the keys tried', async () => {
    writeFileSync(authorized(), '');
    expectEnded(await runCli(['migrate', 'demo', '--from', 'hv1', '--to', 'hv2'], env), /root@10\.77\.1\.11:22: no key was accepted \(tried .*id_ed25519\).*\[SSH_AUTH_FAILED\]/);
  });

  it('an unreachable hypervisor behind a reachable jump host ends', async () => {
    writeFileSync(sshConfig, goodConfig.replace(`HostName ${fleet.hv1.sshAddress}`, 'HostName 10.77.1.99'));
    expectEnded(await runCli(['vm', 'list', 'hv1'], env), /cannot open a tunnel to 10\.77\.1\.99:22 through jump host .*\[SSH_CONNECT_FAILED\]/);
  });

  it('an unreachable jump host ends', async () => {
    writeFileSync(sshConfig, goodConfig.replace(/Host jump\n {2}HostName (\S+)\n/, 'Host jump\n  HostName $1\n  Port 2222\n'));
    expectEnded(await runCli(['migrate', 'demo', '--from', 'hv1', '--to', 'hv2'], env), /:2222: connect ECONNREFUSED.*\[SSH_CONNECT_FAILED\]/);
  });

  it('a reachable host without the VM ends with the reason, connections closed', async () => {
    expectEnded(await runCli(['migrate', 'nosuchvm', '--from', 'hv1', '--to', 'hv2'], env), /no running VM "nosuchvm"/);
  });
});
