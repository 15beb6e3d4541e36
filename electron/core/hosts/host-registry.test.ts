import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { mkdtempSync, readFileSync, readdirSync, rmSync, writeFileSync, existsSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { HostRegistry, defaultConfigDir } from './host-registry';
import { FerryException } from '../../../shared/errors';
import type { HostConfig } from '../../../shared/model/host';

const hv1: HostConfig = { id: 'hv1', transport: { kind: 'ssh', ssh: { host: 'hv1.example', user: 'root', port: 2222 } } };
const lab: HostConfig = { id: 'lab-a', transport: { kind: 'local' } };

const codeOf = async (p: Promise<unknown>) => {
  const e = await p.then(() => undefined, (x: unknown) => x);
  expect(e).toBeInstanceOf(FerryException);
  return (e as FerryException).code;
};

describe('HostRegistry', () => {
  let dir: string;
  beforeEach(() => {
    dir = mkdtempSync(path.join(tmpdir(), 'ferry-cfg-'));
  });
  afterEach(() => rmSync(dir, { recursive: true, force: true }));

  it('starts with the built-in hosts only, and persists what is added', async () => {
    const reg = new HostRegistry(path.join(dir, 'ferry'), [lab]);
    expect(await reg.list()).toEqual([lab]);
    await reg.add(hv1);
    const again = new HostRegistry(path.join(dir, 'ferry'), [lab]);
    expect(await again.list()).toEqual([lab, hv1]);
    expect(JSON.parse(readFileSync(path.join(dir, 'ferry', 'hosts.json'), 'utf8'))).toEqual({ version: 1, hosts: [hv1] });
    // no temp files left behind
    expect(readdirSync(path.join(dir, 'ferry'))).toEqual(['hosts.json']);
  });

  it('refuses duplicates, invalid configs and removing built-ins, naming the problem', async () => {
    const reg = new HostRegistry(dir, [lab]);
    await reg.add(hv1);
    expect(await codeOf(reg.add(hv1))).toBe('ALREADY_EXISTS');
    expect(await codeOf(reg.add({ ...hv1, id: 'lab-a' }))).toBe('ALREADY_EXISTS');
    const bad = await reg.add({ ...hv1, id: '../etc' }).catch((e: FerryException) => e);
    expect(bad).toMatchObject({ code: 'INVALID_REQUEST' });
    expect((bad as FerryException).message).toMatch(/id: host id/);
    expect(await codeOf(reg.remove('lab-a'))).toBe('INVALID_REQUEST');
    expect(await codeOf(reg.remove('nope'))).toBe('NOT_FOUND');
    await reg.remove('hv1');
    expect(await reg.list()).toEqual([lab]);
  });

  it('edits a host in place, and refuses editing built-ins, unknown ids and invalid settings', async () => {
    const reg = new HostRegistry(dir, [lab]);
    await reg.add(hv1);
    await reg.add({ id: 'hv2', transport: { kind: 'local' } });
    const edited: HostConfig = { id: 'hv1', transport: { kind: 'ssh', ssh: { host: 'hv1.example', identityFile: '/root/.ssh/id_hv', proxyJump: 'bastion.example:2200' } } };
    await reg.update(edited);
    expect((await new HostRegistry(dir, [lab]).list()).map((h) => h.id)).toEqual(['lab-a', 'hv1', 'hv2']);
    expect(await new HostRegistry(dir, [lab]).get('hv1')).toEqual(edited);
    expect(await codeOf(reg.update({ ...lab }))).toBe('INVALID_REQUEST');
    expect(await codeOf(reg.update({ ...hv1, id: 'nope' }))).toBe('NOT_FOUND');
    expect(await codeOf(reg.update({ id: 'hv1', transport: { kind: 'ssh', ssh: { host: '-oProxyCommand=x' } } }))).toBe('INVALID_REQUEST');
    expect(await reg.get('hv1')).toEqual(edited);
  });

  it('keeps concurrent adds', async () => {
    const reg = new HostRegistry(dir);
    await Promise.all(['a1', 'a2', 'a3', 'a4'].map((id) => reg.add({ id, transport: { kind: 'local' } })));
    expect((await new HostRegistry(dir).list()).map((h) => h.id).sort()).toEqual(['a1', 'a2', 'a3', 'a4']);
  });

  it('reports a corrupt file clearly and never overwrites it', async () => {
    const file = path.join(dir, 'hosts.json');
    for (const content of ['{"version": 1, "hosts": [', '{"version": 1, "hosts": [{"id": "Bad Id!"}]}', '[]']) {
      writeFileSync(file, content);
      const reg = new HostRegistry(dir, [lab]);
      const e = await reg.list().catch((x: FerryException) => x);
      expect(e).toMatchObject({ code: 'CONFIG_CORRUPT' });
      expect((e as FerryException).message).toContain(file);
      expect(await codeOf(reg.add(hv1))).toBe('CONFIG_CORRUPT');
      expect(readFileSync(file, 'utf8')).toBe(content);
    }
  });

  it('finds its directory from XDG_CONFIG_HOME', () => {
    expect(defaultConfigDir({ XDG_CONFIG_HOME: '/x/cfg' })).toBe('/x/cfg/ferry');
    expect(defaultConfigDir({ XDG_CONFIG_HOME: 'relative' })).toMatch(/\.config\/ferry$/);
    expect(existsSync(dir)).toBe(true);
  });
});
