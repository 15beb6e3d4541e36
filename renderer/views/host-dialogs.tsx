import { useState } from 'react';
import { useConsole } from '../store/console-store';

export function AddHostForm({ onDone }: { onDone: () => void }) {
  const addHost = useConsole((s) => s.addHost);
  const [id, setId] = useState('');
  const [host, setHost] = useState('');
  const [user, setUser] = useState('');
  const [port, setPort] = useState('');
  const [error, setError] = useState<string>();
  return (
    <form
      className="add-host"
      aria-label="add host"
      onSubmit={(e) => {
        e.preventDefault();
        void addHost({ id, host, ...(user ? { user } : {}), ...(port ? { port: Number(port) } : {}) }).then((err) => {
          if (err) setError(err.message);
          else onDone();
        });
      }}
    >
      <label>Id<input value={id} onChange={(e) => setId(e.target.value)} placeholder="hv1" aria-label="host id" required /></label>
      <label>SSH host or alias<input value={host} onChange={(e) => setHost(e.target.value)} placeholder="hv1.example.com" aria-label="ssh host" required /></label>
      <label>User<input value={user} onChange={(e) => setUser(e.target.value)} placeholder="from ~/.ssh/config" aria-label="ssh user" /></label>
      <label>Port<input value={port} onChange={(e) => setPort(e.target.value)} placeholder="22" aria-label="ssh port" inputMode="numeric" /></label>
      <button type="submit" className="primary">Add</button>
      <button type="button" onClick={onDone}>Cancel</button>
      {error && <p className="error" role="alert">{error}</p>}
    </form>
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
