/**
 * Largest-Triangle-Three-Buckets downsampling: keeps the visual shape of a series with
 * `threshold` points (first and last kept). Points are picked by `x`/`y` accessors so rows
 * with several series can be downsampled on one of them.
 */
export function lttb<T>(data: readonly T[], threshold: number, x: (d: T) => number, y: (d: T) => number): T[] {
  const n = data.length;
  if (threshold >= n || threshold < 3) return data.slice();
  const out: T[] = [data[0]!];
  const every = (n - 2) / (threshold - 2);
  let a = 0;
  for (let i = 0; i < threshold - 2; i++) {
    const avgStart = Math.floor((i + 1) * every) + 1;
    const avgEnd = Math.min(Math.floor((i + 2) * every) + 1, n);
    let avgX = 0;
    let avgY = 0;
    for (let j = avgStart; j < avgEnd; j++) {
      avgX += x(data[j]!);
      avgY += y(data[j]!) || 0;
    }
    const len = Math.max(1, avgEnd - avgStart);
    avgX /= len;
    avgY /= len;
    const rangeStart = Math.floor(i * every) + 1;
    const rangeEnd = Math.floor((i + 1) * every) + 1;
    const ax = x(data[a]!);
    const ay = y(data[a]!) || 0;
    let maxArea = -1;
    let next = rangeStart;
    for (let j = rangeStart; j < rangeEnd; j++) {
      const area = Math.abs((ax - avgX) * ((y(data[j]!) || 0) - ay) - (ax - x(data[j]!)) * (avgY - ay));
      if (area > maxArea) {
        maxArea = area;
        next = j;
      }
    }
    out.push(data[next]!);
    a = next;
  }
  out.push(data[n - 1]!);
  return out;
}
