/** The console's timeline directory: what it holds (newest first) and one file's text, by name. */
import { promises as fs } from 'node:fs';
import path from 'node:path';
import { FerryException } from '../../../shared/errors';
import type { TimelineFile } from '../../../shared/contract';
import { TimelineNameSchema } from '../../../shared/contract';
import { TIMELINE_FORMAT } from '../../../shared/model/timeline';

/** Larger than an hour at 10 Hz (about 25 MB), small enough to hand to a renderer. */
export const MAX_TIMELINE_BYTES = 256 * 1024 * 1024;

async function readSlice(fh: fs.FileHandle, position: number, length: number): Promise<string> {
  const buf = Buffer.alloc(length);
  const { bytesRead } = await fh.read(buf, 0, length, position);
  return buf.subarray(0, bytesRead).toString('utf8');
}

async function describe(dir: string, name: string): Promise<TimelineFile | undefined> {
  const file = path.join(dir, name);
  let fh: fs.FileHandle | undefined;
  try {
    fh = await fs.open(file, 'r');
    const st = await fh.stat();
    if (!st.isFile()) return undefined;
    const info: TimelineFile = { name, bytes: st.size, modifiedAt: st.mtimeMs };
    const head = (await readSlice(fh, 0, Math.min(st.size, 64 * 1024))).split('\n', 1)[0] ?? '';
    try {
      const h = JSON.parse(head) as { format?: string; migrationId?: string; plan?: { vm?: string; from?: string; to?: string }; vm?: { name?: string }; source?: { id?: string }; destination?: { id?: string } };
      if (h.format !== TIMELINE_FORMAT) return undefined;
      if (h.migrationId) info.migrationId = h.migrationId;
      const vm = h.plan?.vm ?? h.vm?.name;
      const from = h.plan?.from ?? h.source?.id;
      const to = h.plan?.to ?? h.destination?.id;
      if (vm) info.vm = vm;
      if (from) info.from = from;
      if (to) info.to = to;
    } catch {
      return undefined; // not a timeline (or its header line is cut): not listed
    }
    const tailLen = Math.min(st.size, 8 * 1024);
    const tail = await readSlice(fh, st.size - tailLen, tailLen);
    const end = /"type":"end"[^\n]*?"outcome":"(\w+)"/.exec(tail);
    info.outcome = end?.[1] ?? 'unfinished';
    return info;
  } catch {
    return undefined;
  } finally {
    await fh?.close();
  }
}

export async function listTimelines(dir: string): Promise<TimelineFile[]> {
  let names: string[];
  try {
    names = await fs.readdir(dir);
  } catch (e) {
    if ((e as NodeJS.ErrnoException).code === 'ENOENT') return [];
    throw new FerryException('IO_ERROR', `cannot list timelines in ${dir}: ${(e as Error).message}`);
  }
  const found = await Promise.all(names.filter((n) => TimelineNameSchema.safeParse(n).success).map((n) => describe(dir, n)));
  return found.filter((f): f is TimelineFile => f !== undefined).sort((a, b) => b.modifiedAt - a.modifiedAt);
}

export async function readTimelineText(dir: string, name: string): Promise<string> {
  if (!TimelineNameSchema.safeParse(name).success) throw new FerryException('INVALID_REQUEST', `not a timeline name: ${JSON.stringify(name)}`);
  const file = path.join(dir, name);
  try {
    const st = await fs.stat(file);
    if (st.size > MAX_TIMELINE_BYTES) throw new FerryException('INVALID_REQUEST', `timeline ${name} is ${(st.size / 1e6).toFixed(0)} MB, more than the ${MAX_TIMELINE_BYTES / 1e6} MB the console opens; export it with 'ferry timeline --csv' instead`);
    return await fs.readFile(file, 'utf8');
  } catch (e) {
    if (e instanceof FerryException) throw e;
    const code = (e as NodeJS.ErrnoException).code === 'ENOENT' ? 'NOT_FOUND' : 'IO_ERROR';
    throw new FerryException(code, `cannot read timeline ${name}: ${(e as Error).message}`, { name });
  }
}
