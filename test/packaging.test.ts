/** The packaging config points at files that exist, and the icon set is complete and square. */
import { existsSync, readFileSync } from 'node:fs';
import { describe, expect, it } from 'vitest';

const yml = readFileSync('electron-builder.yml', 'utf8');
const pngSize = (file: string) => {
  const b = readFileSync(file);
  expect(b.subarray(1, 4).toString('latin1')).toBe('PNG');
  return { w: b.readUInt32BE(16), h: b.readUInt32BE(20) };
};

describe('electron-builder.yml', () => {
  it('names the app and ships the demo guest as an extra resource', () => {
    expect(yml).toMatch(/^appId: dev\.ferry\.console$/m);
    expect(yml).toMatch(/^productName: Ferry$/m);
    expect(yml).toMatch(/from: assets\/guest\/guest\.elf\n\s+to: guest\/guest\.elf/);
    for (const t of ['AppImage', 'deb', 'dmg', 'nsis']) expect(yml).toContain(t);
  });

  it('every icon path it names exists; the Linux set has each size, square', () => {
    const paths = [...yml.matchAll(/icon: (\S+)/g)].map((m) => m[1]!);
    expect(paths.length).toBeGreaterThanOrEqual(4);
    for (const p of paths) expect(existsSync(p), p).toBe(true);
    for (const n of [16, 32, 48, 64, 128, 256, 512]) expect(pngSize(`assets/icons/${n}x${n}.png`)).toEqual({ w: n, h: n });
    expect(pngSize('assets/icons/icon.png')).toEqual({ w: 1024, h: 1024 });
  });
});
