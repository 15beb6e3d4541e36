// Electron security scan (part of npm run lint). The online "available security fixes" check
// is skipped (no network here). Findings of MEDIUM or above fail the lint unless accepted
// below, each with the reason also written next to the code it concerns.
import { spawnSync } from 'node:child_process';
import { cpSync, mkdirSync, readFileSync, rmSync } from 'node:fs';
import path from 'node:path';

const ACCEPTED = {
  PRELOAD_JS_CHECK: 'the preload exposes only window.ferry {invoke, on} through contextBridge (electron/preload.ts, tested in preload.test.ts)',
  OPEN_EXTERNAL_JS_CHECK: 'openExternal only for http(s) URLs from setWindowOpenHandler (electron/main.ts)',
};

const dir = path.resolve('.tmp/eneg');
rmSync(dir, { recursive: true, force: true });
mkdirSync(dir, { recursive: true });
for (const f of ['electron/main.ts', 'electron/preload.ts', 'electron/ipc-bridge.ts', 'renderer/index.html']) cpSync(f, path.join(dir, path.basename(f)));
const version = JSON.parse(readFileSync('node_modules/electron/package.json', 'utf8')).version;
const csv = path.resolve('.tmp/electronegativity.csv');
rmSync(csv, { force: true });
const r = spawnSync('npx', ['electronegativity', '-i', dir, '-e', version, '-x', 'AvailableSecurityFixesGlobalCheck', '-o', csv, '-v', 'false'], { encoding: 'utf8', timeout: 120_000 });
let rows;
try {
  rows = readFileSync(csv, 'utf8').trim().split('\n').slice(1).map((l) => l.split(','));
} catch {
  console.error(`electronegativity did not run: ${r.stderr || r.stdout}`);
  process.exit(1);
}
let bad = 0;
for (const row of rows) {
  const [issue, severity, confidence, file, loc] = row.map((c) => c.replace(/^"|"$/g, ''));
  const accepted = ACCEPTED[issue];
  const sev = severity ?? '';
  if (!['MEDIUM', 'HIGH', 'CRITICAL'].includes(sev)) continue;
  console.log(`${accepted ? 'accepted' : 'FINDING '} ${sev.padEnd(6)} ${issue} ${path.basename(file ?? '')}:${loc} (${confidence})${accepted ? ` — ${accepted}` : ''}`);
  if (!accepted) bad++;
}
console.log(`electronegativity: ${rows.length} finding(s), ${bad} not accepted`);
process.exit(bad > 0 ? 1 : 0);
