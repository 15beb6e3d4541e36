import { describe, expect, it } from 'vitest';
import { mapImagePath } from './storage-copy';
import type { HostConfig } from '../../../shared/model/host';

const host = (id: string, imagesDir?: string): HostConfig => ({ id, transport: { kind: 'local' }, ...(imagesDir ? { imagesDir } : {}) });

describe('mapImagePath', () => {
  it('moves an image under the source images dir to the same place under the destination one', () => {
    expect(mapImagePath(host('a', '/srv/a'), host('b', '/data/b'), '/srv/a/vm1/disk.qcow2')).toBe('/data/b/vm1/disk.qcow2');
  });
  it('keeps the path when it is outside the images dir or a host has none', () => {
    expect(mapImagePath(host('a', '/srv/a'), host('b', '/data/b'), '/srv/ab/disk.qcow2')).toBe('/srv/ab/disk.qcow2');
    expect(mapImagePath(host('a', '/srv/a'), host('b', '/data/b'), '/srv/a/../x.img')).toBe('/srv/a/../x.img');
    expect(mapImagePath(host('a'), host('b', '/data/b'), '/var/lib/images/x.img')).toBe('/var/lib/images/x.img');
  });
});
