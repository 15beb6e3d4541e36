import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { execFileSync, spawn } from 'node:child_process';
import { existsSync, mkdtempSync, readFileSync, rmSync, writeFileSync, renameSync } from 'node:fs';
import { createServer, connect as netConnect } from 'node:net';
import type { Server, Socket } from 'node:net';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { SshTransport } from './ssh-transport';
import type { SshTransportOptions, SshTarget } from './ssh-transport';
import { fingerprintSha256 } from './known-hosts';
import { QmpClient } from '../qmp/qmp-client';
import { QmpDisconnectedError, QmpExecuteError } from '../qmp/qmp-errors';
import { FerryException } from '../../../shared/errors';
import { makeClientHome, sshKeygen, startSshd } from '../../../test/support/sshd';
import type { TestSshd } from '../../../test/support/sshd';
import { startTestVm } from '../../../test/support/qemu';
import type { TestVm } from '../../../test/support/qemu';
import { isAlive, killPid, waitFor } from '../../../test/support/processes';

const errorOf = async (p: Promise<unknown>): Promise<FerryException> => {
  const e = await p.then(() => undefined, (x: unknown) => x);
  expect(e).toBeInstanceOf(FerryException);
  return e as FerryException;
};

describe('SshTransport against real sshd', () => {
  let sshd: TestSshd;
  let noStreamLocal: TestSshd;
  let jump: TestSshd;
  let client: ReturnType<typeof makeClientHome>;
  let vm: TestVm;
  const open: SshTransport[] = [];

  const transport = (target: Partial<SshTarget> = {}, options: SshTransportOptions = {}) => {
    const t = new SshTransport({ host: '127.0.0.1', port: sshd.port, ...target }, { homeDir: client.home, agent: false, ...options });
    open.push(t);
    return t;
  };

  beforeAll(async () => {
    sshd = await startSshd();
    noStreamLocal = await startSshd({ allowStreamLocal: false, sftp: false });
    jump = await startSshd();
    client = makeClientHome([sshd, noStreamLocal, jump]);
    client.trust(sshd);
    client.trust(noStreamLocal);
    client.trust(jump);
    vm = await startTestVm();
  });

  afterAll(async () => {
    for (const t of open) await t.close();
    await vm?.stop();
    for (const s of [sshd, noStreamLocal, jump]) await s?.stop();
    client?.cleanup();
    for (const s of [sshd, noStreamLocal, jump]) if (s) expect(isAlive(s.pid)).toBe(false);
  });

  it('runs a command and reports stdout, stderr and the exit code', async () => {
    const t = transport();
    await t.connect();
    expect(t.state).toBe('connected');
    const r = await t.exec(['sh', '-c', 'echo out; echo err >&2; exit 3']);
    expect(r).toMatchObject({ code: 3, stdout: 'out\n', stderr: 'err\n' });
    const w = await t.exec(['whoami']);
    expect(w.stdout.trim()).toBe('root');
  });

  it('passes hostile arguments byte-exact and executes nothing else', async () => {
    const t = transport();
    await t.connect();
    const dir = mkdtempSync(path.join(tmpdir(), 'ferry-hostile-'));
    const marker = path.join(dir, 'pwned');
    const hostile = [
      'two words', "it's", 'say "hi"', `$(touch ${marker})`, `\`touch ${marker}\``, `; touch ${marker}`,
      `| touch ${marker}`, `&& touch ${marker}`, 'line1\nline2', '\ttab', '*', '~', '\\', '-n', '--help', '', 'héllo 世界', '$HOME', "'; touch " + marker + "; '",
    ];
    const r = await t.exec(['printf', '%s\\0', ...hostile]);
    expect(r.code).toBe(0);
    expect(r.stdout.split('\0').slice(0, -1)).toEqual(hostile);
    expect(existsSync(marker)).toBe(false);
    rmSync(dir, { recursive: true, force: true });
  });

  it('feeds stdin and spawns a long-running process whose output streams', async () => {
    const t = transport();
    await t.connect();
    expect((await t.exec(['tr', 'a-z', 'A-Z'], { stdin: 'ferry' })).stdout).toBe('FERRY');
    const p = await t.spawn(['sh', '-c', 'echo ready; read line; echo "got $line"']);
    const out: string[] = [];
    p.stdout.on('data', (c: Buffer) => out.push(c.toString()));
    await waitFor(() => out.join('').includes('ready'), 'spawned output');
    p.stdin.write('x\n');
    const exit = await p.exited;
    expect(exit.code).toBe(0);
    expect(out.join('')).toBe('ready\ngot x\n');
  });

  it('speaks QMP to a real QEMU through streamlocal forwarding', async () => {
    const t = transport();
    await t.connect();
    const qmp = await QmpClient.connect(await t.openUnix(vm.qmpPath));
    try {
      expect(await qmp.execute('query-status')).toMatchObject({ status: 'prelaunch' });
      const resume = qmp.waitForEvent('RESUME', { timeoutMs: 5000 });
      await qmp.execute('cont');
      await resume;
      const stop = qmp.waitForEvent('STOP', { timeoutMs: 5000 });
      await qmp.execute('stop');
      await stop;
      const e = await qmp.execute('no-such-command').catch((x: unknown) => x);
      expect((e as QmpExecuteError).errorClass).toBe('CommandNotFound');
      expect(await qmp.execute<unknown[]>('query-qmp-schema')).not.toHaveLength(0);
      expect(await qmp.execute('query-migrate')).toEqual({});
    } finally {
      qmp.close();
    }
  });

  it('falls back to socat when the server refuses streamlocal forwarding', async () => {
    const t = transport({ port: noStreamLocal.port });
    await t.connect();
    const qmp = await QmpClient.connect(await t.openUnix(vm.qmpPath));
    try {
      expect(await qmp.execute('query-status')).toMatchObject({ running: false });
      const e = await qmp.execute('no-such-command').catch((x: unknown) => x);
      expect((e as QmpExecuteError).errorClass).toBe('CommandNotFound');
    } finally {
      qmp.close();
    }
    const missing = await errorOf(t.openUnix('/nonexistent/qmp.sock'));
    expect(missing.code).toBe('NOT_FOUND');
    // and without the fallback, the refusal is a clear typed error
    const strict = transport({ port: noStreamLocal.port }, { socatFallback: false });
    await strict.connect();
    expect((await errorOf(strict.openUnix(vm.qmpPath))).code).toBe('SSH_CHANNEL_REFUSED');
  });

  it('reads and writes files over sftp, and without sftp', async () => {
    for (const port of [sshd.port, noStreamLocal.port]) {
      const t = transport({ port });
      await t.connect();
      const dir = mkdtempSync(path.join(tmpdir(), 'ferry-files-'));
      const file = path.join(dir, 'argv.json');
      writeFileSync(file, 'old');
      await t.writeFile(file, '["qemu", "-m", "64"]\n', 0o600);
      expect(readFileSync(file, 'utf8')).toBe('["qemu", "-m", "64"]\n');
      expect((await t.readFile(file)).toString()).toBe('["qemu", "-m", "64"]\n');
      expect((await errorOf(t.readFile(path.join(dir, 'missing')))).code).toBe('NOT_FOUND');
      rmSync(dir, { recursive: true, force: true });
    }
  });

  it('opens a TCP connection from the host through forwardOut', async () => {
    const echo = createServer((s) => s.pipe(s));
    await new Promise<void>((r) => echo.listen(0, '127.0.0.1', () => r()));
    const port = (echo.address() as { port: number }).port;
    const t = transport();
    await t.connect();
    const s = await t.openTcp('127.0.0.1', port);
    const got = new Promise<string>((r) => s.once('data', (c: Buffer) => r(c.toString())));
    s.write('ping');
    expect(await got).toBe('ping');
    s.destroy();
    echo.close();
  });

  it('refuses an unknown host key with its SHA256 fingerprint, and a changed one with both', async () => {
    const bare = makeClientHome([sshd]);
    try {
      const t = new SshTransport({ host: '127.0.0.1', port: sshd.port }, { homeDir: bare.home, agent: false });
      const e = await errorOf(t.connect());
      expect(e.code).toBe('SSH_HOST_KEY_UNKNOWN');
      const expected = execFileSync('ssh-keygen', ['-lf', '-', '-E', 'sha256'], { input: sshd.hostKeyPub }).toString().split(' ')[1];
      expect(e.details?.fingerprint).toBe(expected);
      expect(t.state).toBe('disconnected');

      // a different key of the same type on record for this host:port
      const other = sshKeygen(path.join(bare.home, 'other'));
      writeFileSync(bare.knownHostsPath, `[127.0.0.1]:${sshd.port} ${other.split(' ').slice(0, 2).join(' ')}\n`);
      const changed = await errorOf(new SshTransport({ host: '127.0.0.1', port: sshd.port }, { homeDir: bare.home, agent: false }).connect());
      expect(changed.code).toBe('SSH_HOST_KEY_CHANGED');
      expect(changed.message).toContain(expected);
      expect(changed.message).toContain(fingerprintSha256(Buffer.from(other.split(' ')[1]!, 'base64')));

      // a hashed entry (ssh-keygen -H) for the right key is accepted
      writeFileSync(bare.knownHostsPath, `[127.0.0.1]:${sshd.port} ${sshd.hostKeyPub.split(' ').slice(0, 2).join(' ')}\n`);
      execFileSync('ssh-keygen', ['-H', '-f', bare.knownHostsPath], { stdio: 'ignore' });
      expect(readFileSync(bare.knownHostsPath, 'utf8')).toMatch(/^\|1\|/);
      const hashed = new SshTransport({ host: '127.0.0.1', port: sshd.port }, { homeDir: bare.home, agent: false });
      open.push(hashed);
      await hashed.connect();
      expect((await hashed.exec(['true'])).code).toBe(0);
    } finally {
      bare.cleanup();
    }
  });

  it('honours ssh_config alias, HostName, Port, User, IdentityFile and ProxyJump', async () => {
    const home = makeClientHome([]);
    try {
      // The only key is under a non-default name, so it is found through IdentityFile alone.
      const key = path.join(home.sshDir, 'lab_key');
      const pub = sshKeygen(key);
      sshd.authorize(pub);
      jump.authorize(pub);
      home.trust(sshd);
      home.trust(jump);
      rmSync(home.keyPath);
      home.writeConfig([
        'Host bastion',
        '  HostName 127.0.0.1',
        `  Port ${jump.port}`,
        '  User root',
        '  IdentityFile ~/.ssh/lab_key',
        '',
        'Host hv-*',
        '  HostName 127.0.0.1',
        `  Port ${sshd.port}`,
        '  User root',
        '  IdentityFile ~/.ssh/lab_key',
        '',
        'Host hv-behind-bastion',
        '  ProxyJump bastion',
        '',
      ].join('\n'));
      const direct = new SshTransport({ host: 'hv-1' }, { homeDir: home.home, agent: false });
      open.push(direct);
      expect(direct.resolve()).toMatchObject({ hostName: '127.0.0.1', port: sshd.port, user: 'root', proxyJump: [] });
      await direct.connect();
      expect(direct.label).toBe(`root@127.0.0.1:${sshd.port}`);

      const viaJump = new SshTransport({ host: 'hv-behind-bastion' }, { homeDir: home.home, agent: false });
      open.push(viaJump);
      expect(viaJump.resolve().proxyJump).toEqual([{ host: 'bastion' }]);
      await viaJump.connect();
      // The target sees the connection coming from the jump host's forwarding (sshd on 127.0.0.1).
      const r = await viaJump.exec(['sh', '-c', 'echo "$SSH_CONNECTION"']);
      expect(r.stdout.split(' ')[2]).toBe('127.0.0.1');
      expect(r.stdout.trim().split(' ')[3]).toBe(String(sshd.port));
      // QMP through the chain
      const qmp = await QmpClient.connect(await viaJump.openUnix(vm.qmpPath));
      expect(await qmp.execute('query-status')).toHaveProperty('status');
      qmp.close();

      // a jump host that refuses our key fails with an auth error naming it
      const badJump = new SshTransport({ host: 'hv-1', proxyJump: `root@127.0.0.1:${noStreamLocal.port}` }, { homeDir: home.home, agent: false });
      home.trust(noStreamLocal);
      const e = await errorOf(badJump.connect());
      expect(e.code).toBe('SSH_AUTH_FAILED');
      expect(e.message).toContain(String(noStreamLocal.port));
    } finally {
      home.cleanup();
    }
  });

  it('asks for the passphrase of an encrypted key, and says when one is needed', async () => {
    const home = makeClientHome([sshd], { passphrase: 'correct horse' });
    home.trust(sshd);
    try {
      const none = await errorOf(new SshTransport({ host: '127.0.0.1', port: sshd.port }, { homeDir: home.home, agent: false }).connect());
      expect(none.code).toBe('SSH_PASSPHRASE_REQUIRED');
      expect(none.details?.keys).toEqual([home.keyPath]);

      const wrong = await errorOf(new SshTransport({ host: '127.0.0.1', port: sshd.port }, { homeDir: home.home, agent: false, askPassphrase: async () => 'wrong' }).connect());
      expect(wrong.code).toBe('SSH_PASSPHRASE_REQUIRED');
      expect(wrong.message).toMatch(/wrong passphrase/);

      const asked: string[] = [];
      const t = new SshTransport({ host: '127.0.0.1', port: sshd.port }, {
        homeDir: home.home, agent: false, askPassphrase: async (p) => { asked.push(p); return 'correct horse'; },
      });
      open.push(t);
      await t.connect();
      expect(asked).toEqual([home.keyPath]);
      expect((await t.exec(['true'])).code).toBe(0);
    } finally {
      home.cleanup();
    }
  });

  it('authenticates with ssh-agent', async () => {
    const home = makeClientHome([sshd]);
    home.trust(sshd);
    const sock = path.join(home.home, 'agent.sock');
    const agent = spawn('ssh-agent', ['-D', '-a', sock], { stdio: 'ignore' });
    try {
      await waitFor(() => existsSync(sock), 'ssh-agent socket');
      execFileSync('ssh-add', [home.keyPath], { env: { ...process.env, SSH_AUTH_SOCK: sock }, stdio: 'ignore' });
      // Move the key away: only the agent holds it now.
      renameSync(home.keyPath, path.join(home.home, 'elsewhere'));
      const without = await errorOf(new SshTransport({ host: '127.0.0.1', port: sshd.port }, { homeDir: home.home, agent: false }).connect());
      expect(without.code).toBe('SSH_AUTH_FAILED');
      const t = new SshTransport({ host: '127.0.0.1', port: sshd.port }, { homeDir: home.home, agent: sock });
      open.push(t);
      await t.connect();
      expect((await t.exec(['true'])).code).toBe(0);
    } finally {
      await killPid(agent.pid!);
      home.cleanup();
    }
  });

  it('reports a dropped connection, ends every stream with a typed error, and reconnects', async () => {
    // A TCP relay we can cut, between the transport and sshd.
    const sockets = new Set<Socket>();
    const relay: Server = createServer((inbound) => {
      const out = netConnect({ host: '127.0.0.1', port: sshd.port });
      sockets.add(inbound);
      sockets.add(out);
      inbound.pipe(out).pipe(inbound);
      inbound.on('error', () => {});
      out.on('error', () => {});
    });
    await new Promise<void>((r) => relay.listen(0, '127.0.0.1', () => r()));
    const relayPort = (relay.address() as { port: number }).port;
    client.trust(sshd, '127.0.0.1'); // same key, now also expected on the relay's port
    const [type, b64] = sshd.hostKeyPub.split(' ');
    writeFileSync(client.knownHostsPath, `${readFileSync(client.knownHostsPath, 'utf8')}[127.0.0.1]:${relayPort} ${type} ${b64}\n`);

    const t = transport({ port: relayPort }, { keepaliveIntervalMs: 200, keepaliveCountMax: 2 });
    const states: string[] = [];
    t.onStateChange((c) => states.push(c.state));
    await t.connect();
    const qmp = await QmpClient.connect(await t.openUnix(vm.qmpPath));
    const proc = await t.spawn(['sleep', '30']);
    const streamError = new Promise<unknown>((r) => (proc.stdout as unknown as NodeJS.EventEmitter).once('error', r));
    for (const s of sockets) s.destroy();
    await waitFor(() => t.state === 'disconnected', 'disconnect noticed');
    expect(states).toEqual(['connecting', 'connected', 'disconnected']);
    expect(await qmp.whenClosed()).toBeInstanceOf(QmpDisconnectedError);
    expect(((await streamError) as FerryException).code).toBe('SSH_DISCONNECTED');
    expect((await errorOf(t.exec(['true']))).code).toBe('TRANSPORT_CLOSED');

    await t.connect();
    expect(t.state).toBe('connected');
    expect((await t.exec(['echo', 'back'])).stdout).toBe('back\n');
    await t.close();
    relay.close();
  });
  it('has sshd turn Nagle off on a connection that only forwards (else a reply can wait 40 ms for a delayed ACK)', async () => {
    const verbose = await startSshd({ logLevel: 'DEBUG2' });
    try {
      verbose.authorize(client.pub);
      client.trust(verbose);
      const t = transport({ port: verbose.port });
      await t.connect();
      // Only a forward from here on, as a QMP tunnel is: sshd sets TCP_NODELAY on no unix socket.
      const qmp = await QmpClient.connect(await t.openUnix(vm.qmpPath));
      expect(await qmp.execute('query-status')).toHaveProperty('status');
      qmp.close();
      await waitFor(() => /fd \d+ setting TCP_NODELAY/.test(verbose.log()), 'sshd setting TCP_NODELAY');
      await t.close();

      // Through a jump host: its sshd sets it on the connection from Ferry too, besides the
      // socket it opens to the target for the forward (which it always does).
      const verboseJump = await startSshd({ logLevel: 'DEBUG2' });
      try {
        verboseJump.authorize(client.pub);
        client.trust(verboseJump);
        const viaJump = transport({ port: sshd.port, proxyJump: `root@127.0.0.1:${verboseJump.port}` });
        await viaJump.connect();
        expect((await viaJump.exec(['echo', 'through'])).stdout).toBe('through\n');
        await waitFor(() => (verboseJump.log().match(/fd \d+ setting TCP_NODELAY/g) ?? []).length >= 2, 'the jump host setting TCP_NODELAY on both sockets');
        await viaJump.close();
      } finally {
        await verboseJump.stop();
      }
    } finally {
      await verbose.stop();
    }
  });
});
