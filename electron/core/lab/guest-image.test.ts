import { describe, expect, it } from 'vitest';
import { copyFileSync, mkdirSync, mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { guestImagePath } from './local-lab';

describe('finding the demo guest image', () => {
  it('finds it in the source tree', () => {
    expect(guestImagePath({})).toBe(path.resolve('assets/guest/guest.elf'));
  });

  it('finds it as an extra resource of a packaged app (module inside app.asar)', () => {
    const root = mkdtempSync(path.join(tmpdir(), 'ferry-packaged-'));
    try {
      const resources = path.join(root, 'resources');
      mkdirSync(path.join(resources, 'guest'), { recursive: true });
      copyFileSync('assets/guest/guest.elf', path.join(resources, 'guest', 'guest.elf'));
      const found = guestImagePath({}, { moduleDir: path.join(resources, 'app.asar', 'dist', 'electron'), resourcesPath: resources, cwd: root });
      expect(found).toBe(path.join(resources, 'guest', 'guest.elf'));
    } finally {
      rmSync(root, { recursive: true, force: true });
    }
  });

  it('says where it looked when the image is nowhere', () => {
    const root = mkdtempSync(path.join(tmpdir(), 'ferry-noguest-'));
    try {
      expect(() => guestImagePath({}, { moduleDir: path.join(root, 'x'), resourcesPath: path.join(root, 'res'), cwd: root })).toThrow(/demo guest image not found .*npm run build:guest/);
    } finally {
      rmSync(root, { recursive: true, force: true });
    }
  });

  it('honours FERRY_GUEST_IMAGE', () => {
    expect(guestImagePath({ FERRY_GUEST_IMAGE: path.resolve('assets/guest/guest.elf') }, { moduleDir: '/nonexistent' })).toBe(path.resolve('assets/guest/guest.elf'));
  });
});
