import { describe, expect, it } from 'vitest';
import { accelOfArgv, joinOpts, machineOfArgv, memoryKiBOfArgv, parseQemuArgv, qmpSocketsOfArgv, rewriteArgvForRuntime, serialSocketOfArgv, splitOpts, withMachineType, withOption } from './qemu-argv';
import { buildArgv, vmFiles } from './vm-launcher';

const files = vmFiles('/run/ferry', 'web1');
const words = (argv: string[]) => argv.join(' ');

/** What a script or a unit typically starts (the README's example of a QEMU Ferry did not start). */
const plain = [
  'qemu-system-x86_64', '-name', 'web1', '-nodefaults', '-display', 'none', '-machine', 'pc-i440fx-7.2', '-accel', 'kvm',
  '-cpu', 'qemu64,-pni', '-m', '524100k', '-kernel', '/srv/guest.elf', '-append', 'ws=64 rate=20',
  '-drive', 'file=/srv/images/web1.qcow2,format=qcow2,if=virtio',
  '-chardev', 'socket,id=ser0,path=/var/run/vms/web1.serial,server=on,wait=off', '-serial', 'chardev:ser0',
  '-chardev', 'socket,id=qga0,path=/var/run/vms/web1.qga,server=on,wait=off', '-device', 'virtio-serial', '-device', 'virtserialport,chardev=qga0,name=org.qemu.guest_agent.0',
  '-qmp', 'unix:/var/run/vms/web1.qmp,server=on,wait=off',
  '-chardev', 'socket,id=mon1,path=/var/run/vms/web1.mon,server=on,wait=off', '-mon', 'chardev=mon1,mode=control',
  '-monitor', 'unix:/var/run/vms/web1.hmp,server,nowait',
  '-pidfile', '/var/run/vms/web1.pid', '-D', '/var/log/vms/web1.log', '-daemonize', '-S',
];

describe('QEMU command lines', () => {
  it('splits options, knowing which take no argument', () => {
    const { binary, options } = parseQemuArgv(['/usr/bin/qemu-system-x86_64', '-enable-kvm', '-m', '512', '--nodefaults', '-S', '-snapshot', 'disk.img']);
    expect(binary).toBe('/usr/bin/qemu-system-x86_64');
    expect(options).toEqual([{ name: 'enable-kvm' }, { name: 'm', value: '512' }, { name: 'nodefaults' }, { name: 'S' }, { name: 'snapshot' }, { name: '', value: 'disk.img' }]);
  });

  it('reads QEMU option syntax with doubled commas', () => {
    expect(splitOpts('file,path=/a,,b,id=x')).toEqual(['file', 'path=/a,b', 'id=x']);
    expect(joinOpts(['file', 'path=/a,b', 'id=x'])).toBe('file,path=/a,,b,id=x');
  });

  it('finds the accelerator, the memory, the QMP monitors and the serial console', () => {
    expect(accelOfArgv(plain)).toBe('kvm');
    expect(accelOfArgv(['q', '-enable-kvm'])).toBe('kvm');
    expect(accelOfArgv(['q', '-machine', 'pc,accel=kvm:tcg'])).toBe('kvm');
    expect(accelOfArgv(['q', '-accel', 'tcg,thread=single'])).toBe('tcg');
    expect(accelOfArgv(['q'])).toBe('tcg');
    expect(memoryKiBOfArgv(plain)).toBe(524_100);
    expect(memoryKiBOfArgv(['q', '-m', 'size=1G,slots=2,maxmem=4G'])).toBe(1 << 20);
    expect(memoryKiBOfArgv(['q', '-m', '512'])).toBe(512 * 1024);
    expect(qmpSocketsOfArgv(plain)).toEqual(['/var/run/vms/web1.qmp', '/var/run/vms/web1.mon']);
    expect(serialSocketOfArgv(plain)).toBe('/var/run/vms/web1.serial');
    expect(serialSocketOfArgv(['q', '-serial', 'unix:/tmp/s.sock,server=on,wait=off'])).toBe('/tmp/s.sock');
    expect(serialSocketOfArgv(['q', '-serial', 'pty'])).toBeUndefined();
  });

  it('rewrites every host-local path into Ferry\'s runtime dir and leaves the guest\'s hardware alone', () => {
    const out = rewriteArgvForRuntime(plain, files);
    const s = words(out);
    // Nothing of the source's runtime paths is left
    expect(s).not.toMatch(/\/var\/run\/vms|\/var\/log\/vms/);
    // Ferry's monitors, pid file, daemonized, not paused
    expect(s).toContain(`-qmp unix:${files.qmpSocket},server=on,wait=off -qmp unix:${files.auxQmpSocket},server=on,wait=off -pidfile ${files.pidFile} -daemonize`);
    expect(out).not.toContain('-S');
    expect(out).not.toContain('-monitor');
    expect(out).not.toContain('-mon');
    expect(s).not.toContain('id=mon1');
    // the serial console is where Ferry reads it; other chardevs keep their ids, in the dir
    expect(serialSocketOfArgv(out)).toBe(files.serialSocket);
    expect(s).toContain('-chardev socket,id=qga0,path=/run/ferry/web1/qga0.sock,server=on,wait=off');
    expect(s).toContain('-D /run/ferry/web1/qemu.log');
    // the guest's hardware, disks and kernel exactly as they were
    for (const keep of ['-machine pc-i440fx-7.2', '-accel kvm', '-cpu qemu64,-pni', '-m 524100k', '-kernel /srv/guest.elf', '-drive file=/srv/images/web1.qcow2,format=qcow2,if=virtio', '-device virtserialport,chardev=qga0,name=org.qemu.guest_agent.0', '-name web1']) {
      expect(s).toContain(keep);
    }
  });

  it('is stable: rewriting its own output for another dir only moves the dir', () => {
    const once = rewriteArgvForRuntime(plain, files);
    const elsewhere = vmFiles('/srv/ferry-b', 'web1');
    const twice = rewriteArgvForRuntime(once, elsewhere);
    expect(words(twice)).toBe(words(once).replaceAll('/run/ferry/web1', '/srv/ferry-b/web1'));
  });

  it('turns what cannot run daemonized into sockets: stdio, -nographic', () => {
    const out = words(rewriteArgvForRuntime(['qemu-system-x86_64', '-nographic', '-m', '256', '-chardev', 'stdio,id=c0,signal=off', '-device', 'virtconsole,chardev=c0'], files));
    expect(out).toContain('-display none');
    expect(out).toContain(`-serial unix:${files.serialSocket},server=on,wait=off`);
    expect(out).toContain('-parallel null');
    expect(out).toContain('-chardev socket,id=c0,path=/run/ferry/web1/c0.sock,server=on,wait=off');
    expect(words(rewriteArgvForRuntime(['q', '-serial', 'mon:stdio', '-nodefaults'], files))).toContain(`-serial unix:${files.serialSocket},server=on,wait=off`);
    expect(words(rewriteArgvForRuntime(['q', '-display', 'gtk'], files))).toContain('-display none');
  });

  it('gives a Ferry-launched VM the layout the launcher itself gives it', () => {
    const spec = { name: 'web1', memoryKiB: 65_500, kernel: '/srv/guest.elf', append: 'ws=8' };
    const there = vmFiles('/srv/other', 'web1');
    const here = buildArgv(spec, there, 'tcg', undefined);
    expect(rewriteArgvForRuntime(here, files)).toEqual(buildArgv(spec, files, 'tcg', undefined));
  });
});

describe('an adopted command line on another QEMU', () => {
  it('sets, replaces and drops options; makes the machine type concrete, keeping its properties', () => {
    expect(withMachineType('pc,accel=kvm', 'pc-i440fx-7.2')).toBe('pc-i440fx-7.2,accel=kvm');
    expect(withMachineType('accel=kvm', 'pc-i440fx-7.2')).toBe('pc-i440fx-7.2,accel=kvm');
    expect(withMachineType('type=q35,smm=off', 'pc-q35-7.2')).toBe('pc-q35-7.2,smm=off');
    expect(withMachineType(undefined, 'pc-i440fx-7.2')).toBe('pc-i440fx-7.2');
    expect(machineOfArgv(['q', '-M', 'q35'])).toBe('q35');
    expect(machineOfArgv(['q', '-machine', 'type=q35,smm=off'])).toBe('q35');
    expect(machineOfArgv(['q', '-machine', 'accel=kvm'])).toBeUndefined();
    expect(machineOfArgv(plain)).toBe('pc-i440fx-7.2');
    expect(withOption(['q', '-M', 'pc', '-m', '1'], 'machine', (v) => withMachineType(v, 'pc-i440fx-7.2'))).toEqual(['q', '-machine', 'pc-i440fx-7.2', '-m', '1']);
    expect(withOption(['q', '-m', '1'], 'bios', () => '/fw/qboot.rom')).toEqual(['q', '-m', '1', '-bios', '/fw/qboot.rom']);
    expect(withOption(['q', '-L', '/opt/q/share', '-m', '1'], 'L', () => undefined)).toEqual(['q', '-m', '1']);
  });

  it('starts on the destination with its QEMU, its data dir and the concrete machine, nothing else changed', () => {
    const spec = { name: 'web1', memoryKiB: 524_100, argv: [...plain, '-L', '/opt/old/share/qemu'], machine: 'pc-i440fx-7.2' };
    const out = buildArgv(spec, files, 'kvm', undefined, { binary: '/opt/qemu-10/bin/qemu-system-x86_64', dataDir: '/opt/qemu-10/share/qemu' });
    expect(out.slice(0, 3)).toEqual(['/opt/qemu-10/bin/qemu-system-x86_64', '-L', '/opt/qemu-10/share/qemu']);
    expect(out.filter((a) => a === '-L')).toHaveLength(1);
    expect(words(out)).toContain('-machine pc-i440fx-7.2 ');
    expect(words(out)).toContain('-cpu qemu64,-pni');
    expect(buildArgv({ ...spec, argv: plain }, files, 'kvm', undefined)[0]).toBe('qemu-system-x86_64');
  });
});
