import { useState } from 'react';
import { useConsole } from '../store/console-store';
import type { HostInfo } from '../../shared/contract';
import type { VmInfo } from '../../shared/model/vm';

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

function VmCard({ vm, hosts }: { vm: VmInfo; hosts: HostInfo[] }) {
  const openPlan = useConsole((s) => s.openPlan);
  const targets = hosts.filter((h) => h.config.id !== vm.hostId);
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
        <strong>{vm.name}</strong>
        <span className={`run run-${vm.runState}`}>{vm.runState}</span>
      </header>
      <p className="meta">
        {vm.memoryMiB !== undefined ? `${Math.round(vm.memoryMiB)} MiB` : '? MiB'} · {vm.vcpus ?? '?'} vCPU{vm.managed ? '' : ' · read-only'}
      </p>
      {movable && vm.runState === 'running' && <Workload vm={vm} />}
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
  const [over, setOver] = useState(false);
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
        if (from !== host.config.id) void openPlan(vm, from, host.config.id);
      }}
    >
      <header>
        <h3>{host.config.name ?? host.config.id}</h3>
        <span className={`conn conn-${host.state}`} title={host.lastError?.message ?? host.label}>{host.state}</span>
      </header>
      <p className="meta">{host.label}{host.config.migrationAddress ? ` · migrates via ${host.config.migrationAddress}` : ''}</p>
      {host.state !== 'connected' && (
        <button type="button" onClick={() => void connectHost(host.config.id)}>Connect</button>
      )}
      {host.lastError && <p className="error small">{host.lastError.message}</p>}
      <div className="vm-list">
        {(vms ?? []).map((vm) => <VmCard key={vm.name} vm={vm} hosts={hosts} />)}
        {vms && vms.length === 0 && <p className="empty">No VMs. Drop one here to migrate it.</p>}
      </div>
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
