// `npm run bench -- NAME [--flag ...]` runs bench/NAME.bench.ts (flags passed on); its last line is one JSON object.
import { spawnSync } from 'node:child_process';
import { existsSync, readdirSync } from 'node:fs';
import path from 'node:path';

const root = path.resolve(import.meta.dirname, '..');
const names = readdirSync(path.join(root, 'bench')).filter((f) => f.endsWith('.bench.ts')).map((f) => f.replace(/\.bench\.ts$/, ''));
const wanted = process.argv.slice(2).filter((a) => !a.startsWith('-'));
const flags = process.argv.slice(2).filter((a) => a.startsWith('-'));
if (wanted.length === 0) {
  console.error(`usage: npm run bench -- NAME   (one of: ${names.join(', ')})`);
  process.exit(2);
}
for (const name of wanted) {
  const file = path.join(root, 'bench', `${name}.bench.ts`);
  if (!existsSync(file)) {
    console.error(`no benchmark "${name}" (have: ${names.join(', ')})`);
    process.exit(2);
  }
  const r = spawnSync('npx', ['tsx', file, ...flags], { cwd: root, stdio: 'inherit' });
  if (r.status !== 0) process.exit(r.status ?? 1);
}
