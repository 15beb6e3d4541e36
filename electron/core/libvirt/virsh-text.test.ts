import { describe, expect, it } from 'vitest';
import { FerryException } from '../../../shared/errors';
import { VirshEventParser, decodeXmlText, parseColonTable, parseRawJobStats, parseUuidNameList, parseVersion, parseXpathAttributes, quoteVirshArg, virshCommandLine } from './virsh-text';
import type { VirshEvent } from './virsh-text';

describe('quoting for virsh', () => {
  it('leaves plain words alone and single-quotes the rest the way virsh reads them back', () => {
    expect(quoteVirshArg('6a1d0f3e-5b7c-4e2a-9f1d-000000000001')).toBe('6a1d0f3e-5b7c-4e2a-9f1d-000000000001');
    expect(quoteVirshArg('--rawstats')).toBe('--rawstats');
    expect(quoteVirshArg('')).toBe("''");
    expect(quoteVirshArg(`my vm 'quoted' "dq" ünï 日本`)).toBe(`'my vm '\\''quoted'\\'' "dq" ünï 日本'`);
    expect(quoteVirshArg('x;y # z \\ w')).toBe(`'x;y # z \\ w'`);
    expect(quoteVirshArg('#comment')).toBe(`'#comment'`);
    expect(virshCommandLine(['domjobinfo', 'a b', '--rawstats'])).toBe(`domjobinfo 'a b' --rawstats`);
  });

  it('refuses what cannot be typed: a control character (readline acts on TAB) and an empty command', () => {
    expect(() => quoteVirshArg('tab\there')).toThrow(/control character U\+0009/);
    expect(() => quoteVirshArg('nl\nx')).toThrow(FerryException);
    expect(() => virshCommandLine([])).toThrow(/empty virsh command/);
  });
});

describe('parsing virsh output', () => {
  it('reads list --uuid --name keeping names with spaces, quotes and Unicode untouched', () => {
    const text = `6a1d0f3e-5b7c-4e2a-9f1d-000000000001 demo\nc9abcae8-05ab-41cc-9079-4b4a398a00c6 my vm 'quoted' "dq" ünï 日本\n24f7cb56-97da-4595-bd6f-d09017ce0714 tab\there\n7f1d30ab-b2d1-4aa6-9331-b9a47d39ffc1  two spaces \n\n`;
    expect(parseUuidNameList(text)).toEqual([
      { uuid: '6a1d0f3e-5b7c-4e2a-9f1d-000000000001', name: 'demo' },
      { uuid: 'c9abcae8-05ab-41cc-9079-4b4a398a00c6', name: `my vm 'quoted' "dq" ünï 日本` },
      { uuid: '24f7cb56-97da-4595-bd6f-d09017ce0714', name: 'tab\there' },
      { uuid: '7f1d30ab-b2d1-4aa6-9331-b9a47d39ffc1', name: ' two spaces ' },
    ]);
  });

  it('reads raw job statistics (as virsh 9.0 prints them) into libvirt field names', () => {
    const s = parseRawJobStats('Job type: 2\n\noperation: 5\ntime_elapsed: 1626\ndowntime: 300\nmemory_dirty_rate: 15430\nmemory_page_size: 4096\nerrmsg: some text: here\nsuccess: yes\n\n');
    expect(s.jobType).toBe(2);
    expect(s.fields).toEqual({ operation: 5, time_elapsed: 1626, downtime: 300, memory_dirty_rate: 15430, memory_page_size: 4096, errmsg: 'some text: here', success: 'yes' });
    expect(parseRawJobStats('Job type: 0\n\n').jobType).toBe(0);
    expect(() => parseRawJobStats('nothing')).toThrow(/no job type/);
  });

  it('reads dominfo, version and xpath attributes', () => {
    const info = parseColonTable('Id:             2\nName:           a: b  c\nState:          shut off\nMax memory:     524288 KiB\n');
    expect(info.get('Name')).toBe('a: b  c');
    expect(info.get('State')).toBe('shut off');
    expect(parseVersion('Compiled against library: libvirt 9.0.0\nUsing library: libvirt 9.0.0\nUsing API: QEMU 9.0.0\nRunning hypervisor: QEMU 7.2.22\nRunning against daemon: 9.0.0\n'))
      .toEqual({ library: '9.0.0', hypervisorName: 'QEMU', hypervisor: '7.2.22', daemon: '9.0.0' });
    expect(parseXpathAttributes(' path="/run/libvirt/qemu/a &quot;b&quot; &amp; &#233;.sock"\n type="kvm"\n')).toEqual([
      { name: 'path', value: '/run/libvirt/qemu/a "b" & é.sock' },
      { name: 'type', value: 'kvm' },
    ]);
    expect(decodeXmlText('&lt;&#x41;&gt;&bogus;')).toBe('<A>&bogus;');
  });

  it('splits the event stream by the names asked for, with job-completed statistics', () => {
    const got: VirshEvent[] = [];
    const names = [`it's "odd"`, 'demo'];
    const p = new VirshEventParser(() => names, (e) => got.push(e));
    p.push(`2026-12-01 09:49:59.107+0000: event 'migration-iteration' for domain 'demo': iteration: '1'\n2026-12-01 09:50:00.331+0000: event 'lifecycle' for domain 'other': Suspended Migrated\n`);
    p.push(`2026-12-01 09:50:00.337+0000: event 'lifecycle' for domain 'it's "odd"': Suspended Post-copy\n2026-12-01 09:50:00.848+0000: event 'job-completed' for domain 'demo':\n\toperation: 5\n\tdowntime: 21\n\tmemory_postcopy_requests: 8\n`);
    expect(got).toHaveLength(2);
    p.flush();
    expect(got.map((e) => [e.event, e.domain, e.detail])).toEqual([
      ['migration-iteration', 'demo', "iteration: '1'"],
      ['lifecycle', `it's "odd"`, 'Suspended Post-copy'],
      ['job-completed', 'demo', ''],
    ]);
    expect(got[0]!.t).toBe(Date.parse('2026-12-01T09:49:59.107Z'));
    expect(got[2]!.stats).toEqual({ operation: 5, downtime: 21, memory_postcopy_requests: 8 });
  });
});
