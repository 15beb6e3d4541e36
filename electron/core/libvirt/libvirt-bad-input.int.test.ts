/**
 * Bad input through libvirt, on real daemons: a domain whose name has spaces, quotes, a
 * backslash, a semicolon and Unicode is data from end to end (listed, planned, preflighted,
 * migrated, found again by that exact name); a domain libvirt refuses to migrate gets
 * libvirt's own reason, word for word, in the preflight; the same domain migrates once the
 * plan copies its local disk.
 */
import path from 'node:path';
import { randomUUID } from 'node:crypto';
import { existsSync } from 'node:fs';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { MigrationPlanSchema } from '../../../shared/model/migration';
import { LibvirtDriver } from '../migration/drivers/libvirt-driver';
import type { EngineHosts } from '../migration/drivers/hypervisor-driver';
import { defaultMachine, defineDomain, demoDomainXml, demoSerialPath, labVirsh, LAB_DISK_PATH } from '../lab/libvirt-lab';
import { readLabState, waitGuestReady } from '../lab/local-lab';
import { guestImagePath } from '../lab/local-lab';
import { domainInfo, findDomain, listLibvirtVms } from './libvirt-domains';
import { libvirtLabMissing, makeLibvirtLab } from '../../../test/support/libvirt-lab';
import type { TestLibvirtLab } from '../../../test/support/libvirt-lab';
import { runDriver } from '../../../test/support/driver-run';

const missing = await libvirtLabMissing();
const ODD = `web 'quoted' "db" ünï 日本 \\ x;y #1`;

describe.skipIf(missing !== undefined)(`libvirt: names as data, libvirt's refusals word for word${missing ? ` (skipped: ${missing})` : ''}`, () => {
  let lab: TestLibvirtLab;
  let driver: LibvirtDriver;
  let hosts: EngineHosts;

  beforeAll(async () => {
    lab = await makeLibvirtLab({ dataDiskMiB: 32, workload: { wsMiB: 16, rateMiBs: 5 } });
    driver = new LibvirtDriver(lab.pool);
    hosts = { host: async (id) => lab.hosts.find((h) => h.id === id)!, transport: async (id) => lab.transports.get(id)! };
    // A second, small domain with an awkward name on lab-a.
    const daemon = readLabState(lab.root)!.libvirt!.daemons[0]!;
    const sh = await labVirsh(daemon);
    try {
      const type = lab.accel;
      const uuid = randomUUID();
      await defineDomain(sh, daemon.dir, demoDomainXml({ name: ODD, uuid, memoryKiB: 128 * 1024, kernel: guestImagePath(), cmdline: 'ws=16 rate=5 hb=100', type, machine: await defaultMachine(sh, type) }));
      await sh.run(['start', uuid]);
      await waitGuestReady(lab.transports.get('lab-a')!, demoSerialPath(uuid));
    } finally {
      sh.close();
    }
  }, 120_000);
  afterAll(async () => {
    await lab?.close();
  }, 60_000);

  it('lists, preflights and migrates a domain whose name has spaces, quotes, a backslash and Unicode, found again by that exact name', async () => {
    const listed = await listLibvirtVms('lab-a', await lab.conn('lab-a'));
    expect(listed.map((v) => v.name).sort()).toEqual(['demo', ODD].sort());
    const plan = MigrationPlanSchema.parse({ vm: ODD, from: 'lab-a', to: 'lab-b' });
    const pf = await driver.preflight(plan, hosts);
    expect(pf.checks.filter((c) => c.status === 'fail')).toEqual([]);
    expect(pf.checks.find((c) => c.id === 'source-vm')!.reason).toContain(`${ODD} is running on lab-a`);
    const r = await runDriver(driver, plan, hosts);
    const end = await r.done;
    expect(end).toMatchObject({ outcome: 'completed', destinationRunning: true });
    expect(r.events.some((e) => e.event === 'job-completed')).toBe(true); // the event stream matched the name
    const there = await findDomain(await lab.conn('lab-b'), ODD);
    expect(there).toBeDefined();
    expect((await domainInfo(await lab.conn('lab-b'), there!.uuid)).state).toBe('running');
    expect(await findDomain(await lab.conn('lab-a'), ODD)).toBeUndefined();
    // A near miss of the name is not the domain.
    const pf2 = await driver.preflight(MigrationPlanSchema.parse({ vm: ODD.replace('ü', 'u'), from: 'lab-b', to: 'lab-a' }), hosts);
    expect(pf2.ok).toBe(false);
    expect(pf2.checks.find((c) => c.id === 'source-vm')!.reason).toBe(`no libvirt domain named ${JSON.stringify(ODD.replace('ü', 'u'))} on lab-b`);
  });

  it('gives libvirt\'s own reason, word for word, for a domain it refuses to migrate (a local disk without copy-storage)', async () => {
    const plan = MigrationPlanSchema.parse({ vm: 'demo', from: 'lab-a', to: 'lab-b' });
    const pf = await driver.preflight(plan, hosts);
    expect(pf.ok).toBe(false);
    const accepts = pf.checks.find((c) => c.id === 'libvirt-accepts')!;
    expect(accepts.status).toBe('fail');
    expect(accepts.reason).toBe('libvirt refuses: Unsafe migration: Migration without shared storage is unsafe');
    const storage = pf.checks.find((c) => c.id === 'storage')!;
    expect(storage).toMatchObject({ status: 'fail' });
    expect(storage.reason).toContain(`${LAB_DISK_PATH} (vda)`);
    expect(storage.fix).toMatch(/--copy-storage/);
    // And the migration itself: refused by libvirt with the same words, nothing left behind.
    await expect(runDriver(driver, plan, hosts)).rejects.toThrow('Unsafe migration: Migration without shared storage is unsafe');
    expect((await domainInfo(await lab.conn('lab-a'), (await findDomain(await lab.conn('lab-a'), 'demo'))!.uuid)).state).toBe('running');
    expect(await findDomain(await lab.conn('lab-b'), 'demo')).toBeUndefined();
  });

  it('migrates that domain with its disk copied by libvirt into an image Ferry created on the destination', async () => {
    const plan = MigrationPlanSchema.parse({ vm: 'demo', from: 'lab-a', to: 'lab-b', copyStorage: true });
    const pf = await driver.preflight(plan, hosts);
    expect(pf.checks.filter((c) => c.status === 'fail')).toEqual([]);
    expect(pf.checks.find((c) => c.id === 'storage')!.reason).toContain(`copied by libvirt: vda ${LAB_DISK_PATH} (created on the destination)`);
    const r = await runDriver(driver, plan, hosts);
    const end = await r.done;
    expect(end).toMatchObject({ outcome: 'completed', destinationRunning: true });
    expect(r.notes.some((n) => n.startsWith(`created ${LAB_DISK_PATH} (qcow2,`))).toBe(true);
    const daemons = readLabState(lab.root)!.libvirt!.daemons;
    expect(existsSync(path.join(daemons[1]!.dir, 'lib', 'images', path.basename(LAB_DISK_PATH)))).toBe(true);
    // the source keeps its own image (libvirt never removes it)
    expect(existsSync(path.join(daemons[0]!.dir, 'lib', 'images', path.basename(LAB_DISK_PATH)))).toBe(true);
  });
});
