/** Timeline exports in the console: files handed to the browser's (or Electron's) download. */
import { entryCharts } from '../../shared/report/report-html';
import type { MigrationEntry } from '../../shared/report/picture';

export function download(name: string, data: Blob): void {
  const url = URL.createObjectURL(data);
  const a = document.createElement('a');
  a.href = url;
  a.download = name;
  a.rel = 'noopener';
  document.body.append(a);
  a.click();
  a.remove();
  setTimeout(() => URL.revokeObjectURL(url), 10_000);
}

export function downloadText(name: string, text: string, type: string): void {
  download(name, new Blob([text], { type }));
}

/** The last component of a path (`/x/demo-1.ferry.jsonl` → `demo-1.ferry.jsonl`). */
export function fileName(p: string): string {
  return p.replace(/^.*[\\/]/, '');
}

/** `demo-1.ferry.jsonl` → `demo-1`, `task.log` → `task` (what exported files are named after). */
export function baseName(name: string): string {
  return fileName(name).replace(/(\.ferry)?\.jsonl$|\.(log|txt|json)$/, '');
}

/** Every chart of a migration stacked in one SVG (the report's charts). */
export function stackedChartsSvg(entry: MigrationEntry, width = 1000): { svg: string; width: number; height: number } {
  const charts = entryCharts(entry, width);
  const h = 220;
  const body = charts.map((c, i) => c.replace('<svg ', `<svg x="0" y="${i * h}" `)).join('');
  const height = charts.length * h;
  return { svg: `<svg xmlns="http://www.w3.org/2000/svg" width="${width}" height="${height}" viewBox="0 0 ${width} ${height}"><rect width="100%" height="100%" fill="#ffffff"/>${body}</svg>`, width, height };
}

/** Rasterises an SVG (no external references) to a PNG at `scale` × its size. */
export async function svgToPng(svg: string, width: number, height: number, scale = 2): Promise<Blob> {
  const img = new Image();
  img.src = `data:image/svg+xml;charset=utf-8,${encodeURIComponent(svg)}`;
  await img.decode();
  const canvas = document.createElement('canvas');
  canvas.width = width * scale;
  canvas.height = height * scale;
  const ctx = canvas.getContext('2d');
  if (!ctx) throw new Error('no 2D canvas');
  ctx.scale(scale, scale);
  ctx.drawImage(img, 0, 0, width, height);
  return await new Promise<Blob>((resolve, reject) => canvas.toBlob((b) => (b ? resolve(b) : reject(new Error('PNG encoding failed'))), 'image/png'));
}
