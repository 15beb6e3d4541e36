import { useState } from 'react';
import { useConsole } from '../store/console-store';
import type { HostFormInput } from '../store/console-store';
import { ModalForm } from '../components/modal-form';

/** Adds an SSH host, or edits one (`initial`: its current settings; the id stays). */
export function AddHostForm({ onDone, initial }: { onDone: () => void; initial?: HostFormInput }) {
  const addHost = useConsole((s) => s.addHost);
  const [id, setId] = useState(initial?.id ?? '');
  const [host, setHost] = useState(initial?.host ?? '');
  const [user, setUser] = useState(initial?.user ?? '');
  const [port, setPort] = useState(initial?.port ? String(initial.port) : '');
  const [identityFile, setIdentityFile] = useState(initial?.identityFile ?? '');
  const [proxyJump, setProxyJump] = useState(initial?.proxyJump ?? '');
  const [error, setError] = useState<string>();
  const portBad = port !== '' && !(Number.isInteger(Number(port)) && Number(port) >= 1 && Number(port) <= 65535);
  return (
    <form
      className="add-host"
      aria-label={initial ? `edit host ${initial.id}` : 'add host'}
      onSubmit={(e) => {
        e.preventDefault();
        if (portBad) return;
        const input: HostFormInput = { id, host, ...(user ? { user } : {}), ...(port ? { port: Number(port) } : {}), ...(identityFile ? { identityFile } : {}), ...(proxyJump ? { proxyJump } : {}) };
        void addHost(input, initial !== undefined).then((err) => {
          if (err) setError(err.message);
          else onDone();
        });
      }}
    >
      <label>Id<input value={id} onChange={(e) => setId(e.target.value)} placeholder="hv1" aria-label="host id" required readOnly={initial !== undefined} /></label>
      <label>SSH host or alias<input value={host} onChange={(e) => setHost(e.target.value)} placeholder="hv1.example.com" aria-label="ssh host" required /></label>
      <label>User<input value={user} onChange={(e) => setUser(e.target.value)} placeholder="from ~/.ssh/config" aria-label="ssh user" /></label>
      <label>Port<input value={port} onChange={(e) => setPort(e.target.value)} placeholder="22" aria-label="ssh port" inputMode="numeric" aria-invalid={portBad} /></label>
      <label>Key<input value={identityFile} onChange={(e) => setIdentityFile(e.target.value)} placeholder="~/.ssh/id_ed25519" aria-label="identity file" /></label>
      <label>Jump host<input value={proxyJump} onChange={(e) => setProxyJump(e.target.value)} placeholder="[user@]bastion[:port]" aria-label="jump host" /></label>
      <button type="submit" className="primary" disabled={portBad}>{initial ? 'Save' : 'Add'}</button>
      <button type="button" onClick={onDone}>Cancel</button>
      {portBad && <p className="error" role="alert">port: a number from 1 to 65535</p>}
      {error && <p className="error" role="alert">{error}</p>}
    </form>
  );
}

/** An encrypted key needs its passphrase: asked here, kept in memory, remembered only if asked and possible. */
export function PassphraseDialog() {
  const ask = useConsole((s) => s.passphrase);
  const connectHost = useConsole((s) => s.connectHost);
  const dismiss = useConsole((s) => s.dismissPassphrase);
  const [value, setValue] = useState('');
  const [remember, setRemember] = useState(false);
  if (!ask) return null;
  const can = ask.canRemember;
  return (
    <ModalForm
      titleId="pass-title"
      title={`Passphrase for ${ask.hostId}`}
      onSubmit={() => {
        const passphrase = value;
        setValue('');
        void connectHost(ask.hostId, { passphrase, remember: remember && can?.available === true });
      }}
    >
      <p>{ask.wrong ? 'That passphrase did not open the key. ' : ''}The key {ask.keys.join(', ') || ''} is encrypted.</p>
      <label className="inline">
        Passphrase
        <input type="password" autoFocus value={value} onChange={(e) => setValue(e.target.value)} aria-label="key passphrase" autoComplete="off" />
      </label>
      <p>
        <label className="inline" title={can?.available ? 'Encrypted by the OS keychain; never stored in plain text' : (can?.reason ?? '')}>
          <input type="checkbox" checked={remember && can?.available === true} disabled={!can?.available} onChange={(e) => setRemember(e.target.checked)} aria-label="remember the passphrase" />
          Remember it (encrypted by the OS keychain)
        </label>
        {can && !can.available && <span className="muted small"> — {can.reason}</span>}
      </p>
      <footer>
        <span className="muted">Kept in memory for this session{can?.available ? ' unless you ask to remember it' : ''}.</span>
        <button type="button" onClick={dismiss}>Cancel</button>
        <button type="submit" className="primary" disabled={value === ''}>Connect</button>
      </footer>
    </ModalForm>
  );
}

export function TrustDialog() {
  const trust = useConsole((s) => s.trust);
  const accept = useConsole((s) => s.trustKey);
  const dismiss = useConsole((s) => s.dismissTrust);
  if (!trust) return null;
  return (
    <div className="overlay" role="presentation">
      <div className="dialog" role="alertdialog" aria-modal="true" aria-labelledby="trust-title">
        <h2 id="trust-title">Unknown host key for {trust.hostId}</h2>
        <p>
          {trust.host} presented a {trust.keyType} key Ferry has never seen. Compare its fingerprint with the one the host's administrator gives you
          (<code>ssh-keygen -lf /etc/ssh/ssh_host_*_key.pub</code> on the host) before trusting it.
        </p>
        <p className="fingerprint" data-testid="fingerprint">{trust.fingerprint}</p>
        <footer>
          <button type="button" onClick={dismiss}>Don't trust</button>
          <button type="button" className="primary" onClick={() => void accept()}>Trust this fingerprint</button>
        </footer>
      </div>
    </div>
  );
}
