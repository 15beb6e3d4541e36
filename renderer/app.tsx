import { useEffect, useState } from 'react';
import type { FerryApi, HostInfo } from '../shared/contract';

declare global {
  interface Window {
    ferry?: FerryApi;
  }
}

/** Placeholder until the console issue: lists the hosts the service knows. */
export function App() {
  const [hosts, setHosts] = useState<HostInfo[]>([]);
  const [error, setError] = useState<string>();
  useEffect(() => {
    if (!window.ferry) {
      setError('No Ferry bridge: start the console with `npm start` (Electron) or `npm run serve` (browser mode).');
      return;
    }
    void window.ferry.invoke('hosts:list', {}).then((r) => (r.ok ? setHosts(r.value) : setError(r.error.message)));
  }, []);
  return (
    <main style={{ fontFamily: 'system-ui, sans-serif', padding: 24 }}>
      <h1>Ferry</h1>
      {error && <p role="alert">{error}</p>}
      <ul>
        {hosts.map((h) => (
          <li key={h.config.id}>
            {h.config.name ?? h.config.id} — {h.state}
          </li>
        ))}
      </ul>
    </main>
  );
}
