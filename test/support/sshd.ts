/**
 * A real OpenSSH server on 127.0.0.1 for tests: its own host key, config, pidfile and
 * authorized_keys in a temp dir, key auth only. Stopped by pid.
 */
import { spawn, execFileSync } from 'node:child_process';
import { mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync, appendFileSync } from 'node:fs';
import { createServer, connect } from 'node:net';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { isAlive, killPid, waitFor } from './processes';

export const SSHD = '/usr/sbin/sshd';

export interface TestSshd {
  port: number;
  pid: number;
  dir: string;
  /** Raw host key blob (the base64 field of the .pub, decoded). */
  hostKeyBlob: Buffer;
  hostKeyPub: string;
  authorize(pubKeyLine: string): void;
  /** What sshd has written to stderr so far (its log, at `logLevel`). */
  log(): string;
  stop(): Promise<void>;
}

export interface SshdOptions {
  allowStreamLocal?: boolean;
  allowTcp?: boolean;
  sftp?: boolean;
  /** sshd's LogLevel (default ERROR); its log is `log()`. */
  logLevel?: string;
  extraConfig?: string[];
}

export async function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const srv = createServer();
    srv.once('error', reject);
    srv.listen(0, '127.0.0.1', () => {
      const addr = srv.address();
      srv.close(() => (typeof addr === 'object' && addr ? resolve(addr.port) : reject(new Error('no port'))));
    });
  });
}

function portOpen(port: number): Promise<boolean> {
  return new Promise((resolve) => {
    const s = connect({ host: '127.0.0.1', port });
    s.once('connect', () => {
      s.destroy();
      resolve(true);
    });
    s.once('error', () => resolve(false));
  });
}

export function sshKeygen(file: string, options: { type?: string; passphrase?: string; comment?: string } = {}): string {
  execFileSync('ssh-keygen', ['-q', '-t', options.type ?? 'ed25519', '-N', options.passphrase ?? '', '-C', options.comment ?? 'ferry-test', '-f', file], { stdio: 'ignore' });
  return readFileSync(`${file}.pub`, 'utf8').trim();
}

export async function startSshd(options: SshdOptions = {}): Promise<TestSshd> {
  mkdirSync('/run/sshd', { recursive: true, mode: 0o755 });
  const dir = mkdtempSync(path.join(tmpdir(), 'ferry-sshd-'));
  const hostKey = path.join(dir, 'host_ed25519');
  const hostKeyPub = sshKeygen(hostKey, { comment: 'ferry-test-host' });
  const authorized = path.join(dir, 'authorized_keys');
  writeFileSync(authorized, '', { mode: 0o600 });
  const port = await freePort();
  const config = [
    `ListenAddress 127.0.0.1:${port}`,
    `HostKey ${hostKey}`,
    `PidFile ${path.join(dir, 'sshd.pid')}`,
    `AuthorizedKeysFile ${authorized}`,
    'StrictModes no',
    'PermitRootLogin prohibit-password',
    'PubkeyAuthentication yes',
    'PasswordAuthentication no',
    'KbdInteractiveAuthentication no',
    'UsePAM no',
    `AllowStreamLocalForwarding ${options.allowStreamLocal === false ? 'no' : 'yes'}`,
    `AllowTcpForwarding ${options.allowTcp === false ? 'no' : 'yes'}`,
    ...(options.sftp === false ? [] : ['Subsystem sftp /usr/lib/openssh/sftp-server']),
    `LogLevel ${options.logLevel ?? 'ERROR'}`,
    ...(options.extraConfig ?? []),
  ];
  const configPath = path.join(dir, 'sshd_config');
  writeFileSync(configPath, `${config.join('\n')}\n`);
  const child = spawn(SSHD, ['-f', configPath, '-D', '-e'], { stdio: ['ignore', 'ignore', 'pipe'] });
  let stderr = '';
  child.stderr.on('data', (c: Buffer) => (stderr += c.toString()));
  const pid = child.pid!;
  try {
    await waitFor(async () => !isAlive(pid) || (await portOpen(port)), `sshd on port ${port}`);
  } catch (e) {
    await killPid(pid);
    throw e;
  }
  if (!isAlive(pid)) throw new Error(`sshd did not start: ${stderr}`);
  const blob = Buffer.from(hostKeyPub.split(/\s+/)[1]!, 'base64');
  return {
    port,
    pid,
    dir,
    hostKeyBlob: blob,
    hostKeyPub,
    authorize(line: string) {
      appendFileSync(authorized, `${line}\n`);
    },
    log: () => stderr,
    async stop() {
      await killPid(pid);
      rmSync(dir, { recursive: true, force: true });
    },
  };
}

/** A throwaway home directory with ~/.ssh, a client key authorized on the given servers. */
export function makeClientHome(servers: TestSshd[], options: { passphrase?: string } = {}) {
  const home = mkdtempSync(path.join(tmpdir(), 'ferry-home-'));
  const sshDir = path.join(home, '.ssh');
  mkdirSync(sshDir, { mode: 0o700 });
  const keyPath = path.join(sshDir, 'id_ed25519');
  const pub = sshKeygen(keyPath, options.passphrase ? { passphrase: options.passphrase } : {});
  for (const s of servers) s.authorize(pub);
  return {
    home,
    sshDir,
    keyPath,
    pub,
    knownHostsPath: path.join(sshDir, 'known_hosts'),
    trust(server: TestSshd, host = '127.0.0.1') {
      const [type, b64] = server.hostKeyPub.split(/\s+/);
      appendFileSync(path.join(sshDir, 'known_hosts'), `[${host}]:${server.port} ${type} ${b64}\n`);
    },
    writeConfig(text: string) {
      writeFileSync(path.join(sshDir, 'config'), text);
    },
    cleanup() {
      rmSync(home, { recursive: true, force: true });
    },
  };
}
