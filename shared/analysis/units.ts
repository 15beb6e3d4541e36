/** Human units for rates and sizes (decimal MB, as QEMU's bandwidth settings are). */

export function formatBytes(n: number | undefined): string {
  if (n === undefined || !Number.isFinite(n)) return '?';
  const abs = Math.abs(n);
  if (abs >= 1e9) return `${(n / 1e9).toFixed(2)} GB`;
  if (abs >= 1e6) return `${(n / 1e6).toFixed(1)} MB`;
  if (abs >= 1e3) return `${(n / 1e3).toFixed(1)} kB`;
  return `${Math.round(n)} B`;
}

export function formatRate(bytesPerS: number | undefined): string {
  return bytesPerS === undefined ? '?' : `${formatBytes(bytesPerS)}/s`;
}

export function formatMs(ms: number | undefined): string {
  if (ms === undefined || !Number.isFinite(ms)) return '?';
  if (ms >= 10_000) return `${(ms / 1000).toFixed(1)} s`;
  if (ms >= 1000) return `${(ms / 1000).toFixed(2)} s`;
  return `${Math.round(ms)} ms`;
}

/** Parses "100", "100M", "1.5G", "500k" (bytes, decimal units) — the CLI's and the plan dialog's input. */
export function parseByteSize(s: string, defaultUnit: 'B' | 'M' = 'B'): number | undefined {
  const m = /^\s*(\d+(?:\.\d+)?)\s*([kKmMgGtT]?)[bB]?\s*$/.exec(s);
  if (!m) return undefined;
  const unit = (m[2] || defaultUnit).toUpperCase();
  const mult = { B: 1, K: 1e3, M: 1e6, G: 1e9, T: 1e12 }[unit as 'B'] ?? 1;
  return Math.round(Number(m[1]) * mult);
}
