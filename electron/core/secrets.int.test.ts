/**
 * Remembered passphrases against a real sshd and a passphrase-protected key: kept only when
 * they worked, only encrypted, only where a cipher exists; forgotten when wrong or when the
 * host is removed.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { mkdtempSync, readFileSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { ConsoleService } from './console-service';
import { SecretStore } from './secrets';
import type { SecretCipher } from './secrets';
import { makeClientHome, startSshd } from '../../test/support/sshd';
import type { TestSshd } from '../../test/support/sshd';

const PASS = 'correct horse battery staple';

/** A stand-in for safeStorage: reversible, but never the plain text. */
const fakeCipher = (available = true): SecretCipher => ({
  available: () => available,
  encrypt: (p) => Buffer.concat([Buffer.from('ENC1'), Buffer.from(p, 'utf8').map((b) => b ^ 0x5a)]),
  decrypt: (d) => {
    if (d.subarray(0, 4).toString() !== 'ENC1') throw new Error('not ours');
    return Buffer.from(d.subarray(4).map((b) => b ^ 0x5a)).toString('utf8');
  },
});

describe('SecretStore', () => {
  it('refuses to remember without a cipher or without OS encryption, and says why', async () => {
    const dir = mkdtempSync(path.join(tmpdir(), 'ferry-sec-'));
    try {
      await expect(new SecretStore(path.join(dir, 's.json')).set('h', 'x')).rejects.toMatchObject({ code: 'UNSUPPORTED', message: /desktop app/ });
      await expect(new SecretStore(path.join(dir, 's.json'), fakeCipher(false)).set('h', 'x')).rejects.toMatchObject({ code: 'UNSUPPORTED', message: /no keyring/ });
      const corrupt = path.join(dir, 'c.json');
      writeFileSync(corrupt, '{not json');
      await expect(new SecretStore(corrupt, fakeCipher()).set('h', 'x')).rejects.toMatchObject({ code: 'CONFIG_CORRUPT' });
      expect(readFileSync(corrupt, 'utf8')).toBe('{not json'); // never overwritten
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });
});

describe('remembered passphrases over a real sshd', () => {
  let sshd: TestSshd;
  let client: ReturnType<typeof makeClientHome>;
  let configDir: string;
  const services: ConsoleService[] = [];
  const make = (cipher?: SecretCipher) => {
    const s = new ConsoleService({ configDir, ssh: { homeDir: client.home, agent: false }, reconnectDelayMs: 0, ...(cipher ? { secretCipher: cipher } : {}) });
    services.push(s);
    return s;
  };

  beforeAll(async () => {
    sshd = await startSshd();
    client = makeClientHome([sshd], { passphrase: PASS });
    client.trust(sshd);
    configDir = mkdtempSync(path.join(tmpdir(), 'ferry-cfg-'));
  });
  afterAll(async () => {
    for (const s of services) await s.dispose();
    await sshd?.stop();
    client?.cleanup();
    rmSync(configDir, { recursive: true, force: true });
  });

  it('keeps a passphrase that worked, encrypted; a new session connects with it; removal forgets it', async () => {
    const a = make(fakeCipher());
    expect(await a.invoke('secrets:status', {})).toEqual({ ok: true, value: { available: true } });
    expect(await a.invoke('hosts:add', { id: 'hv', transport: { kind: 'ssh', ssh: { host: '127.0.0.1', port: sshd.port, user: 'root' } } })).toMatchObject({ ok: true });
    expect(await a.invoke('hosts:connect', { id: 'hv' })).toMatchObject({ ok: false, error: { code: 'SSH_PASSPHRASE_REQUIRED' } });
    // A wrong passphrase is not remembered.
    expect(await a.invoke('hosts:connect', { id: 'hv', passphrase: 'nope', remember: true })).toMatchObject({ ok: false, error: { code: 'SSH_PASSPHRASE_REQUIRED' } });
    expect(() => statSync(path.join(configDir, 'secrets.json'))).toThrow();
    expect(await a.invoke('hosts:connect', { id: 'hv', passphrase: PASS, remember: true })).toMatchObject({ ok: true, value: { state: 'connected' } });
    const file = path.join(configDir, 'secrets.json');
    const text = readFileSync(file, 'utf8');
    expect(text).not.toContain(PASS);
    expect(text).not.toContain(Buffer.from(PASS).toString('base64'));
    expect(statSync(file).mode & 0o777).toBe(0o600);
    await a.dispose();

    const b = make(fakeCipher());
    expect(await b.invoke('hosts:connect', { id: 'hv' })).toMatchObject({ ok: true, value: { state: 'connected' } });
    await b.dispose();

    // Without the desktop shell's cipher nothing is decrypted or remembered.
    const c = make();
    expect(await c.invoke('secrets:status', {})).toMatchObject({ ok: true, value: { available: false } });
    expect(await c.invoke('hosts:connect', { id: 'hv' })).toMatchObject({ ok: false, error: { code: 'SSH_PASSPHRASE_REQUIRED' } });
    expect(await c.invoke('hosts:connect', { id: 'hv', passphrase: PASS, remember: true })).toMatchObject({ ok: false, error: { code: 'UNSUPPORTED' } });
    expect(await c.invoke('hosts:connect', { id: 'hv', passphrase: PASS })).toMatchObject({ ok: true });
    await c.dispose();

    const d = make(fakeCipher());
    expect(await d.invoke('hosts:remove', { id: 'hv' })).toMatchObject({ ok: true });
    expect(JSON.parse(readFileSync(file, 'utf8')).secrets).toEqual({});
  });

  it('a remembered passphrase that no longer opens the key is forgotten and asked again', async () => {
    const file = path.join(configDir, 'secrets.json');
    const cipher = fakeCipher();
    const e = make(cipher);
    await e.invoke('hosts:add', { id: 'hv2', transport: { kind: 'ssh', ssh: { host: '127.0.0.1', port: sshd.port, user: 'root' } } });
    writeFileSync(file, JSON.stringify({ version: 1, secrets: { hv2: cipher.encrypt('stale').toString('base64') } }));
    expect(await e.invoke('hosts:connect', { id: 'hv2' })).toMatchObject({ ok: false, error: { code: 'SSH_PASSPHRASE_REQUIRED' } });
    expect(JSON.parse(readFileSync(file, 'utf8')).secrets).toEqual({});
  });
});
