import { execFileSync, spawnSync } from 'node:child_process';
import { mkdirSync, mkdtempSync, readFileSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { FerryException } from '../../../shared/errors';
import type { KnownHostEntry } from './known-hosts';
import {
  appendKnownHost,
  checkHostKey,
  entryMatchesName,
  fingerprintSha256,
  formatKnownHostsLine,
  keyTypeOfBlob,
  knownHostsName,
  loadKnownHosts,
  parseKnownHosts,
} from './known-hosts';

const KEYGEN = '/usr/bin/ssh-keygen';

interface Key {
  pubPath: string;
  /** `type base64` as in the .pub file (without comment). */
  pub: string;
  type: string;
  blob: Buffer;
}

let dir: string;
let edA: Key;
let edB: Key;
let ecdsa256: Key;
let ecdsa384: Key;

function genKey(name: string, type: string, bits?: number): Key {
  const path = join(dir, name);
  execFileSync(KEYGEN, ['-q', '-t', type, ...(bits ? ['-b', String(bits)] : []), '-N', '', '-C', `${name}@test`, '-f', path]);
  const pubPath = `${path}.pub`;
  const [t, b64] = readFileSync(pubPath, 'utf8').trim().split(/\s+/);
  return { pubPath, pub: `${t} ${b64}`, type: t!, blob: Buffer.from(b64!, 'base64') };
}

function keygenFingerprint(pubPath: string): string {
  // "256 SHA256:xxxx comment (ED25519)"
  return execFileSync(KEYGEN, ['-lf', pubPath, '-E', 'sha256']).toString().split(' ')[1]!;
}

function ferryError(f: () => unknown): FerryException {
  try {
    f();
  } catch (e) {
    expect(e).toBeInstanceOf(FerryException);
    return e as FerryException;
  }
  throw new Error('expected a FerryException');
}

beforeAll(() => {
  dir = mkdtempSync(join(tmpdir(), 'ferry-kh-'));
  edA = genKey('ed_a', 'ed25519');
  edB = genKey('ed_b', 'ed25519');
  ecdsa256 = genKey('ec256', 'ecdsa', 256);
  ecdsa384 = genKey('ec384', 'ecdsa', 384);
});

afterAll(() => {
  rmSync(dir, { recursive: true, force: true });
});

describe('keys', () => {
  it('fingerprintSha256 equals ssh-keygen -lf -E sha256', () => {
    for (const k of [edA, edB, ecdsa256, ecdsa384]) {
      const fp = fingerprintSha256(k.blob);
      expect(fp).toBe(keygenFingerprint(k.pubPath));
      expect(fp).toMatch(/^SHA256:[A-Za-z0-9+/]{43}$/);
    }
  });

  it('keyTypeOfBlob reads the wire type name', () => {
    expect(keyTypeOfBlob(edA.blob)).toBe('ssh-ed25519');
    expect(keyTypeOfBlob(ecdsa256.blob)).toBe('ecdsa-sha2-nistp256');
    expect(keyTypeOfBlob(ecdsa384.blob)).toBe('ecdsa-sha2-nistp384');
  });

  it('keyTypeOfBlob throws INVALID_REQUEST on malformed blobs', () => {
    const withLen = (n: number, body: string) => Buffer.concat([Buffer.from([n >>> 24, (n >>> 16) & 255, (n >>> 8) & 255, n & 255]), Buffer.from(body, 'latin1')]);
    for (const b of [Buffer.alloc(0), Buffer.from([0, 0, 0]), withLen(0, 'x'), withLen(20, 'short'), withLen(3, 'a\x00b'), withLen(3, 'a b'), withLen(0xffffffff, 'abc')]) {
      expect(ferryError(() => keyTypeOfBlob(b)).code).toBe('INVALID_REQUEST');
    }
  });
});

describe('parseKnownHosts', () => {
  it('parses markers, patterns, comments, and skips junk without throwing', () => {
    const text = [
      '# comment',
      '',
      '   ',
      `host1,host2 ${edA.pub} my comment here`,
      `\t@revoked * ${edB.pub}`,
      `@cert-authority *.example ${ecdsa256.pub}`,
      `@bogus host ${edA.pub}`, // unknown marker
      `host3 ${edA.type}`, // no key
      `host4 ssh-ed25519 !!!notbase64!!!`,
      `host5 ssh-ed25519 ${ecdsa256.pub.split(' ')[1]}`, // type mismatch with blob
      `host6 ssh-ed25519 AAAA`, // decodes to garbage
      `|1|notvalid|x ${edA.pub}`,
      `|1|${Buffer.alloc(10).toString('base64')}|${Buffer.alloc(20).toString('base64')} ${edA.pub}`, // short salt
      `, ${edA.pub}`,
      '2048 35 1234567890', // SSH1 RSA
      `host7 ${edA.pub}\r`,
    ].join('\n');
    const entries = parseKnownHosts(text, 'kh');
    expect(entries.map((e) => [e.line, e.marker, e.hosts, e.comment])).toEqual([
      [4, undefined, 'host1,host2', 'my comment here'],
      [5, 'revoked', '*', undefined],
      [6, 'cert-authority', '*.example', undefined],
      [16, undefined, 'host7', undefined],
    ]);
    expect(entries[0]).toMatchObject({ patterns: ['host1', 'host2'], keyType: 'ssh-ed25519', source: 'kh' });
    expect(entries[0]!.keyBlob.equals(edA.blob)).toBe(true);
  });

  it('returns [] for empty text', () => {
    expect(parseKnownHosts('')).toEqual([]);
  });
});

describe('checkHostKey', () => {
  const check = (text: string, host: string, port: number, key: Key) => checkHostKey(parseKnownHosts(text), host, port, key.blob);

  it('trusts an exact plain match', () => {
    const v = check(`other ${edB.pub}\nvm1.example,10.0.0.1 ${edA.pub}\n`, 'vm1.example', 22, edA);
    expect(v).toEqual({ status: 'trusted', fingerprint: fingerprintSha256(edA.blob) });
    expect(check(`vm1.example,10.0.0.1 ${edA.pub}\n`, '10.0.0.1', 22, edA).status).toBe('trusted');
  });

  it('matches host names case-insensitively', () => {
    expect(check(`VM1.Example ${edA.pub}\n`, 'vm1.EXAMPLE', 22, edA).status).toBe('trusted');
  });

  it('unknown when no entry applies', () => {
    const v = check(`other ${edA.pub}\n`, 'vm1', 22, edA);
    expect(v).toEqual({ status: 'unknown', fingerprint: fingerprintSha256(edA.blob), keyType: 'ssh-ed25519' });
    expect(check('', 'vm1', 22, edA).status).toBe('unknown');
  });

  it('changed when the same key type is known with another key, listing the expected fingerprints', () => {
    const v = check(`vm1 ${edB.pub}\nvm1 ${ecdsa256.pub}\n*.x ${edB.pub}\n`, 'vm1', 22, edA);
    expect(v).toEqual({
      status: 'changed',
      fingerprint: fingerprintSha256(edA.blob),
      keyType: 'ssh-ed25519',
      expected: [{ keyType: 'ssh-ed25519', fingerprint: keygenFingerprint(edB.pubPath) }],
    });
  });

  it('lists each expected key once', () => {
    const v = check(`vm1 ${edB.pub}\nvm1,vm2 ${edB.pub}\n`, 'vm1', 22, edA);
    expect(v.status === 'changed' && v.expected.length).toBe(1);
  });

  it('unknown when only other key types are known', () => {
    const v = check(`vm1 ${ecdsa256.pub}\n`, 'vm1', 22, edA);
    expect(v.status).toBe('unknown');
  });

  it('treats another ECDSA curve as a changed key (as OpenSSH does)', () => {
    const v = check(`vm1 ${ecdsa256.pub}\n`, 'vm1', 22, ecdsa384);
    expect(v).toMatchObject({ status: 'changed', keyType: 'ecdsa-sha2-nistp384', expected: [{ keyType: 'ecdsa-sha2-nistp256' }] });
  });

  it('trusted wins over another same-type entry for the host', () => {
    expect(check(`vm1 ${edB.pub}\nvm1 ${edA.pub}\n`, 'vm1', 22, edA).status).toBe('trusted');
  });

  it('uses [host]:port for ports other than 22', () => {
    const text = `[127.0.0.1]:2222 ${edA.pub}\n127.0.0.1 ${edB.pub}\n`;
    expect(check(text, '127.0.0.1', 2222, edA).status).toBe('trusted');
    expect(check(text, '127.0.0.1', 22, edB).status).toBe('trusted');
    // The port-22 entry does not vouch for port 2222, nor the reverse.
    expect(check(text, '127.0.0.1', 2222, edB).status).toBe('changed');
    expect(check(text, '127.0.0.1', 2200, edA).status).toBe('unknown');
    expect(check(`[127.0.0.1]:22 ${edA.pub}\n`, '127.0.0.1', 22, edA).status).toBe('unknown');
  });

  it('supports * and ? wildcards and negation', () => {
    const text = `*.lab.example,!bad.lab.example ${edA.pub}\nvm? ${edA.pub}\n`;
    expect(check(text, 'a.lab.example', 22, edA).status).toBe('trusted');
    expect(check(text, 'bad.lab.example', 22, edA).status).toBe('unknown');
    expect(check(text, 'vm1', 22, edA).status).toBe('trusted');
    expect(check(text, 'vm10', 22, edA).status).toBe('unknown');
    // Negation excludes the whole entry, whatever the pattern order.
    expect(check(`!bad.lab.example,*.lab.example ${edB.pub}\n`, 'bad.lab.example', 22, edA).status).toBe('unknown');
    // A pattern list made only of negations matches nothing.
    expect(check(`!x ${edA.pub}\n`, 'y', 22, edA).status).toBe('unknown');
    // '*' also matches the bracketed non-standard-port form, as in OpenSSH.
    expect(check(`* ${edA.pub}\n`, 'h', 2222, edA).status).toBe('trusted');
    expect(check(`[*.lab]:2222 ${edA.pub}\n`, 'x.lab', 2222, edA).status).toBe('trusted');
  });

  it('revoked wins over a trusted entry', () => {
    const text = `vm1 ${edA.pub}\n@revoked * ${edA.pub}\n`;
    expect(check(text, 'vm1', 22, edA)).toEqual({ status: 'revoked', fingerprint: fingerprintSha256(edA.blob), keyType: 'ssh-ed25519' });
    // A revoked entry for another key or a host it does not apply to is irrelevant.
    expect(check(`vm1 ${edA.pub}\n@revoked * ${edB.pub}\n`, 'vm1', 22, edA).status).toBe('trusted');
    expect(check(`vm1 ${edA.pub}\n@revoked other ${edA.pub}\n`, 'vm1', 22, edA).status).toBe('trusted');
    // A revoked key alone is not "changed" evidence for another key.
    expect(check(`@revoked vm1 ${edB.pub}\n`, 'vm1', 22, edA).status).toBe('unknown');
  });

  it('ignores @cert-authority entries', () => {
    expect(check(`@cert-authority vm1 ${edA.pub}\n`, 'vm1', 22, edA).status).toBe('unknown');
    expect(check(`@cert-authority vm1 ${edB.pub}\n`, 'vm1', 22, edA).status).toBe('unknown');
  });

  it('fails closed on bad input', () => {
    expect(ferryError(() => checkHostKey([], 'vm1', 22, Buffer.from('junk'))).code).toBe('INVALID_REQUEST');
    expect(ferryError(() => checkHostKey([], 'vm1', 0, edA.blob)).code).toBe('INVALID_REQUEST');
    expect(ferryError(() => checkHostKey([], 'vm1', 70000, edA.blob)).code).toBe('INVALID_REQUEST');
    expect(ferryError(() => checkHostKey([], '', 22, edA.blob)).code).toBe('INVALID_REQUEST');
  });

  it('trusts lines hashed by the real ssh-keygen -H', () => {
    const file = join(dir, 'kh_hash');
    writeFileSync(file, `vm1.example ${edA.pub}\n[127.0.0.1]:2222 ${ecdsa256.pub}\nother ${edB.pub}\n`);
    execFileSync(KEYGEN, ['-H', '-f', file], { stdio: 'ignore' });
    const text = readFileSync(file, 'utf8');
    expect(text).not.toContain('vm1.example');
    const entries = parseKnownHosts(text);
    expect(entries).toHaveLength(3);
    expect(entries.every((e) => e.hashed !== undefined && e.patterns.length === 0)).toBe(true);
    expect(checkHostKey(entries, 'vm1.example', 22, edA.blob).status).toBe('trusted');
    expect(checkHostKey(entries, '127.0.0.1', 2222, ecdsa256.blob).status).toBe('trusted');
    expect(checkHostKey(entries, '127.0.0.1', 22, ecdsa256.blob).status).toBe('unknown');
    expect(checkHostKey(entries, 'vm1.example', 22, edB.blob).status).toBe('changed');
    expect(checkHostKey(entries, 'vm2.example', 22, edA.blob).status).toBe('unknown');
  });
});

describe('formatKnownHostsLine', () => {
  it('writes plain lines that round-trip', () => {
    expect(formatKnownHostsLine('VM1.example', 22, edA.blob)).toBe(`vm1.example ${edA.pub}`);
    expect(formatKnownHostsLine('127.0.0.1', 2222, edA.blob)).toBe(`[127.0.0.1]:2222 ${edA.pub}`);
    expect(formatKnownHostsLine('::1', 2222, edA.blob)).toBe(`[::1]:2222 ${edA.pub}`);
    const e = parseKnownHosts(formatKnownHostsLine('127.0.0.1', 2222, edA.blob));
    expect(checkHostKey(e, '127.0.0.1', 2222, edA.blob).status).toBe('trusted');
  });

  it('writes deterministic hashed lines with a given salt', () => {
    const salt = Buffer.alloc(20, 7);
    const line = formatKnownHostsLine('vm1', 22, edA.blob, { salt });
    expect(line).toMatch(/^\|1\|[A-Za-z0-9+/]{27}=\|[A-Za-z0-9+/]{27}= ssh-ed25519 /);
    expect(line).toBe(formatKnownHostsLine('vm1', 22, edA.blob, { hashed: true, salt }));
    expect(formatKnownHostsLine('vm1', 22, edA.blob, { hashed: true })).not.toBe(formatKnownHostsLine('vm1', 22, edA.blob, { hashed: true }));
    expect(checkHostKey(parseKnownHosts(line), 'vm1', 22, edA.blob).status).toBe('trusted');
  });

  it('hashed lines are found by the real ssh-keygen -F', () => {
    const file = join(dir, 'kh_ours');
    writeFileSync(
      file,
      `${formatKnownHostsLine('vm9.example', 22, edA.blob, { hashed: true })}\n${formatKnownHostsLine('127.0.0.1', 2222, edB.blob, { hashed: true })}\n`,
    );
    const find = (name: string) => spawnSync(KEYGEN, ['-F', name, '-f', file], { encoding: 'utf8' });
    const a = find('vm9.example');
    expect(a.status).toBe(0);
    expect(a.stdout).toContain(edA.pub);
    const b = find('[127.0.0.1]:2222');
    expect(b.status).toBe(0);
    expect(b.stdout).toContain(edB.pub);
    expect(find('vm8.example').status).not.toBe(0);
  });

  it('rejects hosts that would be patterns or break the line, bad ports and salts', () => {
    for (const h of ['', 'a b', 'a,b', '*.x', 'vm?', '!x', '|1|x', '@revoked', '#x', '[::1]', 'a\nb', 'a\x01b', 'a\x7fb']) {
      expect(ferryError(() => formatKnownHostsLine(h, 22, edA.blob)).code).toBe('INVALID_REQUEST');
    }
    expect(ferryError(() => formatKnownHostsLine('h', 0, edA.blob)).code).toBe('INVALID_REQUEST');
    expect(ferryError(() => formatKnownHostsLine('h', 22, edA.blob, { salt: Buffer.alloc(8) })).code).toBe('INVALID_REQUEST');
    expect(ferryError(() => formatKnownHostsLine('h', 22, Buffer.from('nope'))).code).toBe('INVALID_REQUEST');
  });
});

describe('appendKnownHost / loadKnownHosts', () => {
  it('creates the directory (0700) and file (0600) and appends lines', async () => {
    const file = join(dir, 'newhome', '.ssh', 'known_hosts');
    await appendKnownHost(file, formatKnownHostsLine('vm1', 22, edA.blob));
    await appendKnownHost(file, formatKnownHostsLine('vm2', 2222, edB.blob));
    expect(statSync(join(dir, 'newhome', '.ssh')).mode & 0o777).toBe(0o700);
    expect(statSync(file).mode & 0o777).toBe(0o600);
    expect(readFileSync(file, 'utf8')).toBe(`vm1 ${edA.pub}\n[vm2]:2222 ${edB.pub}\n`);
  });

  it('adds a missing newline at the end of an existing file first', async () => {
    const file = join(dir, 'kh_nonl');
    writeFileSync(file, `# hand-edited\nvm1 ${edA.pub}`, { mode: 0o644 });
    await appendKnownHost(file, `vm2 ${edB.pub}`);
    expect(readFileSync(file, 'utf8')).toBe(`# hand-edited\nvm1 ${edA.pub}\nvm2 ${edB.pub}\n`);
    expect(statSync(file).mode & 0o777).toBe(0o644); // existing permissions untouched
  });

  it('appends to an empty file without a leading newline', async () => {
    const file = join(dir, 'kh_empty');
    writeFileSync(file, '');
    await appendKnownHost(file, `vm2 ${edB.pub}`);
    expect(readFileSync(file, 'utf8')).toBe(`vm2 ${edB.pub}\n`);
  });

  it('rejects multi-line or empty input', async () => {
    const file = join(dir, 'kh_reject');
    await expect(appendKnownHost(file, `a ${edA.pub}\nb ${edB.pub}`)).rejects.toMatchObject({ code: 'INVALID_REQUEST' });
    await expect(appendKnownHost(file, '  ')).rejects.toMatchObject({ code: 'INVALID_REQUEST' });
  });

  it('reports IO_ERROR when the path cannot be written', async () => {
    const blocker = join(dir, 'blocker');
    writeFileSync(blocker, 'a file, not a directory');
    await expect(appendKnownHost(join(blocker, 'known_hosts'), `a ${edA.pub}`)).rejects.toMatchObject({ code: 'IO_ERROR' });
  });

  it('loads several files in order, ignoring missing ones', async () => {
    const f1 = join(dir, 'kh_l1');
    const f2 = join(dir, 'kh_l2');
    writeFileSync(f1, `vm1 ${edA.pub}\n`);
    writeFileSync(f2, `garbage\nvm2 ${edB.pub}\n`);
    const entries: KnownHostEntry[] = await loadKnownHosts([f1, join(dir, 'missing'), join(dir, 'blocker', 'x'), f2]);
    expect(entries.map((e) => [e.source, e.line, e.hosts])).toEqual([
      [f1, 1, 'vm1'],
      [f2, 2, 'vm2'],
    ]);
    expect(await loadKnownHosts([])).toEqual([]);
  });

  it('loadKnownHosts reports IO_ERROR for an unreadable path', async () => {
    const d = join(dir, 'kh_is_dir');
    mkdirSync(d);
    await expect(loadKnownHosts([d])).rejects.toMatchObject({ code: 'IO_ERROR' });
  });

  it('an accepted key round-trips through file, load and check', async () => {
    const file = join(dir, 'rt', 'known_hosts');
    const before = checkHostKey(await loadKnownHosts([file]), '192.0.2.7', 2201, edA.blob);
    expect(before.status).toBe('unknown');
    await appendKnownHost(file, formatKnownHostsLine('192.0.2.7', 2201, edA.blob, { hashed: true }));
    expect(checkHostKey(await loadKnownHosts([file]), '192.0.2.7', 2201, edA.blob).status).toBe('trusted');
    expect(checkHostKey(await loadKnownHosts([file]), '192.0.2.7', 2201, edB.blob).status).toBe('changed');
  });
});

describe('helpers', () => {
  it('knownHostsName', () => {
    expect(knownHostsName('Host', 22)).toBe('host');
    expect(knownHostsName('host', 2222)).toBe('[host]:2222');
  });

  it('entryMatchesName with a hashed entry', () => {
    const [e] = parseKnownHosts(formatKnownHostsLine('h', 22, edA.blob, { hashed: true }));
    expect(entryMatchesName(e!, 'h')).toBe(true);
    expect(entryMatchesName(e!, 'H')).toBe(true);
    expect(entryMatchesName(e!, 'g')).toBe(false);
  });
});
