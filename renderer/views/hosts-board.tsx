import { useState } from 'react';
import { useConsole } from '../store/console-store';
import type { HostInfo } from '../../shared/contract';
import { AddHostForm } from './host-dialogs';
import type { VmInfo } from '../../shared/model/vm';
import type { MigrationSample } from '../../shared/model/migration';
import { SavedStates } from './beyond-views';
import { formatMs, formatRate } from '../../shared/analysis/units';

function Workload({ vm }: { vm: VmInfo }) {
  const guestCommand = useConsole((s) => s.guestCommand);
  const [rate, setRate] = useState('');
  return (
    <label className="inline small" title="The demo guest's dirtying rate (MiB/s)">
      Dirty
      <input type="number" min={0} value={rate} placeholder="MiB/s" onChange={(e) => setRate(e.target.value)} aria-label={`dirty rate of ${vm.name} in MiB/s`} />
      <button type="button" disabled={rate === '' || !(Number(rate) >= 0)} onClick={() => void guestCommand(vm.hostId, vm.name, `r ${Math.round(Number(rate))}`)}>Set</button>
    </label>
  );
}

/** Dirty rate of the VM's latest migration, as a tiny line. */
function Sparkline({ vm }: { vm: VmInfo }) {
  const values = useConsole((s) => {
    for (let i = s.order.length - 1; i >= 0; i--) {
      const m = s.migrations[s.order[i]!];
      if (m && (m.summary.plan as { vm?: string }).vm === vm.name) return m.samples;
    }
    return undefined;
  });
  // The last 60 samples with a dirty rate, read from the end (the history may hold an hour).
  const pts: MigrationSample[] = [];
  for (let i = (values?.length ?? 0) - 1; i >= 0 && pts.length < 60; i--) {
    const v = values!.at(i)!;
    if (v.dirtyRate !== undefined) pts.unshift(v);
  }
  if (pts.length < 2) return null;
  const max = Math.max(...pts.map((p) => p.dirtyRate!), 1);
  const d = pts.map((p, i) => `${(i / (pts.length - 1)) * 100},${20 - (p.dirtyRate! / max) * 18}`).join(' ');
  return (
    <svg className="sparkline" viewBox="0 0 100 20" preserveAspectRatio="none" role="img" aria-label={`dirty rate of ${vm.name}, up to ${(max / 1e6).toFixed(0)} MB/s`}>
      <polyline points={d} fill="none" stroke="currentColor" strokeWidth="1.5" vectorEffect="non-scaling-stroke" />
    </svg>
  );
}

/** Where a VM can go: a libvirt domain to another libvirt host, any other VM to a host that is not libvirt's. */
export function migrationTargets(vm: VmInfo, hosts: HostInfo[]): HostInfo[] {
  const libvirt = vm.libvirt !== undefined;
  return hosts.filter((h) => h.config.id !== vm.hostId && (h.config.libvirt !== undefined) === libvirt);
}

function VmCard({ vm, hosts }: { vm: VmInfo; hosts: HostInfo[] }) {
  const openPlan = useConsole((s) => s.openPlan);
  const watch = useConsole((s) => s.watch);
  const targets = migrationTargets(vm, hosts);
  const movable = vm.managed && vm.runState !== 'stopped';
  return (
    <article
      className={`vm-card ${movable ? '' : 'locked'}`}
      draggable={movable}
      data-testid={`vm-${vm.hostId}-${vm.name}`}
      aria-label={`VM ${vm.name} on ${vm.hostId}`}
      onDragStart={(e) => {
        e.dataTransfer.setData('application/x-ferry-vm', JSON.stringify({ vm: vm.name, from: vm.hostId }));
        e.dataTransfer.effectAllowed = 'move';
      }}
    >
      <header>
        <strong className="vm-name">{vm.name}</strong>
        {vm.libvirt && <span className="badge badge-libvirt" title={`libvirt domain ${vm.libvirt.uuid}: migrated through libvirt`}>libvirt</span>}
        <span className={`run run-${vm.runState}`} title={vm.libvirt ? `libvirt: ${vm.libvirt.state}` : undefined}>{vm.libvirt?.state ?? vm.runState}</span>
      </header>
      <p className="meta">
        {vm.memoryMiB !== undefined ? `${Math.round(vm.memoryMiB)} MiB` : '? MiB'} · {vm.vcpus ?? '?'} vCPU{vm.libvirt ? ` · ${vm.libvirt.persistent ? 'persistent' : 'transient'}` : ''}{vm.managed ? '' : ' · read-only'}
        {vm.manager === 'qemu' && <span className="badge" title={`Started outside Ferry (QMP ${vm.qmpSocket}); Ferry adopts it to migrate it`}> · adopted</span>}
      </p>
      <Sparkline vm={vm} />
      {movable && vm.runState === 'running' && <Workload vm={vm} />}
      {vm.runState !== 'stopped' && vm.runState !== 'busy' && (
        <button type="button" className="small" onClick={() => void watch(vm)} aria-label={`watch ${vm.name}`} title="Record a migration someone else runs on this VM (Ferry issues no control)">
          Watch
        </button>
      )}
      {movable && targets.length > 0 && (
        <label className="inline small">
          Move to
          <select aria-label={`migrate ${vm.name} to`} value="" onChange={(e) => e.target.value && void openPlan(vm.name, vm.hostId, e.target.value)}>
            <option value="">…</option>
            {targets.map((h) => (
              <option key={h.config.id} value={h.config.id}>{h.config.name ?? h.config.id}</option>
            ))}
          </select>
        </label>
      )}
    </article>
  );
}

function HostColumn({ host, hosts }: { host: HostInfo; hosts: HostInfo[] }) {
  const vms = useConsole((s) => s.vms[host.config.id]);
  const openPlan = useConsole((s) => s.openPlan);
  const connectHost = useConsole((s) => s.connectHost);
  const removeHost = useConsole((s) => s.removeHost);
  const openEvacuate = useConsole((s) => s.openEvacuate);
  const others = hosts.filter((h) => h.config.id !== host.config.id && h.state === 'connected').length;
  const [over, setOver] = useState(false);
  const [editing, setEditing] = useState(false);
  const ssh = host.config.transport.kind === 'ssh' ? host.config.transport.ssh : undefined;
  return (
    <section
      className={`host-column ${over ? 'drop' : ''}`}
      data-testid={`host-${host.config.id}`}
      aria-label={`host ${host.config.name ?? host.config.id}`}
      onDragOver={(e) => {
        if (e.dataTransfer.types.includes('application/x-ferry-vm')) {
          e.preventDefault();
          setOver(true);
        }
      }}
      onDragLeave={() => setOver(false)}
      onDrop={(e) => {
        setOver(false);
        const raw = e.dataTransfer.getData('application/x-ferry-vm');
        if (!raw) return;
        const { vm, from } = JSON.parse(raw) as { vm: string; from: string };
        if (from === host.config.id) return;
        const source = hosts.find((h) => h.config.id === from);
        if (source && (source.config.libvirt !== undefined) !== (host.config.libvirt !== undefined)) {
          window.alert(host.config.libvirt ? `${host.config.id} runs libvirt: only libvirt domains move there` : `${vm} is a libvirt domain: it moves to another libvirt host`);
          return;
        }
        void openPlan(vm, from, host.config.id);
      }}
    >
      <header>
        <h3>{host.config.name ?? host.config.id}</h3>
        <span className={`conn conn-${host.state}`} title={host.lastError?.message ?? host.label}>{host.state}</span>
        {ssh && (
          <button type="button" className="icon-button" aria-label={`edit host ${host.config.id}`} title="Edit this host's SSH settings" onClick={() => setEditing((x) => !x)}>✎</button>
        )}
        {!host.config.id.startsWith('lab-') && (
          <button type="button" className="icon-button" aria-label={`remove host ${host.config.id}`} title="Remove this host from Ferry" onClick={() => window.confirm(`Remove ${host.config.id} from Ferry? Its VMs keep running.`) && void removeHost(host.config.id)}>×</button>
        )}
      </header>
      {editing && ssh && (
        <AddHostForm
          initial={{ id: host.config.id, host: ssh.host, ...(ssh.user ? { user: ssh.user } : {}), ...(ssh.port ? { port: ssh.port } : {}), ...(ssh.identityFile ? { identityFile: ssh.identityFile } : {}), ...(ssh.proxyJump ? { proxyJump: ssh.proxyJump } : {}) }}
          onDone={() => setEditing(false)}
        />
      )}
      <p className="meta">{host.label}{host.config.migrationAddress ? ` · migrates via ${host.config.migrationAddress}` : ''}</p>
      {host.facts && (
        <p className="meta" data-testid={`facts-${host.config.id}`}>
          {host.facts.libvirtVersion ? `libvirt ${host.facts.libvirtVersion} · ` : ''}{host.facts.qemuVersion ? `QEMU ${host.facts.qemuVersion}` : host.facts.unavailable ? 'QEMU ?' : 'no QEMU'} · {host.facts.memAvailableMiB !== undefined ? `${(host.facts.memAvailableMiB / 1024).toFixed(1)} GiB free` : '? free'} · {host.facts.kvm === undefined ? 'KVM ?' : host.facts.kvm ? 'KVM' : 'TCG only'}
          {host.facts.unavailable && <span className="warn small" title={host.facts.unavailable}> · {/HOST_BUSY|host busy/i.test(host.facts.unavailable) ? 'host busy' : 'facts unavailable'}</span>}
        </p>
      )}
      {host.facts?.switchovers?.map((l) => (
        <p key={l.to} className="meta small" data-testid={`learned-${host.config.id}-${l.to}`} title={`Learned from the switchovers of earlier migrations to ${l.to}${l.linkRate ? `; link last measured at ${formatRate(l.linkRate)}` : ''}${l.overheadMs !== undefined ? `; fixed cost ${formatMs(l.overheadMs)}` : ''}`}>
          → {l.to}: final copy ≈ {formatRate(l.finalCopyRate)}, learned from {l.count} switchover{l.count === 1 ? '' : 's'}
        </p>
      ))}
      {host.state !== 'connected' && (
        <button type="button" onClick={() => void connectHost(host.config.id)}>Connect</button>
      )}
      {host.lastError && <p className="error small">{host.lastError.message}</p>}
      {host.state === 'connected' && (vms?.length ?? 0) > 0 && (
        <button type="button" className="small" disabled={others === 0} title={others === 0 ? 'Not now: no other connected host to move the VMs to' : `Move every VM off ${host.config.id}`} onClick={() => openEvacuate(host.config.id)}>
          Evacuate…
        </button>
      )}
      <div className="vm-list">
        {(vms ?? []).map((vm) => <VmCard key={vm.name} vm={vm} hosts={hosts} />)}
        {vms && vms.length === 0 && <p className="empty">No VMs. Drop one here to migrate it.</p>}
      </div>
      {host.state === 'connected' && <SavedStates hostId={host.config.id} vms={vms ?? []} />}
    </section>
  );
}

export function HostsBoard() {
  const hosts = useConsole((s) => s.hosts);
  return (
    <div className="board" aria-label="hosts">
      {hosts.map((h) => <HostColumn key={h.config.id} host={h} hosts={hosts} />)}
    </div>
  );
}
