import { describe, expect, it } from 'vitest';
import { encodeStages, resolveStatePath, restorePipeline, savePipeline } from './vm-state';
import { encryptionFor } from '../../../shared/model/saved-state';
import type { HostConfig } from '../../../shared/model/host';
import { withIncomingDefer } from '../hosts/vm-launcher';

const host: HostConfig = { id: 'h', transport: { kind: 'local' }, statesDir: '/srv/states' };

describe('state file pipelines', () => {
  it('quotes every stage with the shell-quote function and writes through a rename', () => {
    const stages = encodeStages('zstd', encryptionFor("O'Brien <ob@example.org>"));
    expect(savePipeline(stages, '/srv/a b.partial', '/srv/a b.written')).toBe(
      "zstd -q -c | { gpg --batch --yes --quiet --trust-model always --compress-algo none --encrypt --recipient 'O'\\''Brien <ob@example.org>' --output - > '/srv/a b.partial' && mv -f -- '/srv/a b.partial' '/srv/a b.written'; }",
    );
    expect(savePipeline(encodeStages('none', undefined), '/p', '/w')).toBe('{ cat > /p && mv -f -- /p /w; }');
  });

  it('decrypts then decompresses on restore', () => {
    expect(restorePipeline('/s/x;rm -rf', 'gzip', undefined)).toBe("gzip -d -c -- '/s/x;rm -rf'");
    expect(restorePipeline('/s/x', 'zstd', { kind: 'gpg', recipient: 'k' })).toBe('gpg --batch --quiet --decrypt -- /s/x | zstd -q -d -c');
    expect(restorePipeline('/s/x', 'none', undefined)).toBe('cat -- /s/x');
    expect(() => restorePipeline('/s/x', 'none', { kind: 'age', recipient: 'age1abc' })).toThrow(/identity file/);
  });

  it('tells age recipients from gpg ones, and resolves relative names in the states dir', () => {
    expect(encryptionFor('age1qyqszqgpqyqszqgpqyqszqgpqyqszqgp')?.kind).toBe('age');
    expect(encryptionFor('ABCDEF0123456789')?.kind).toBe('gpg');
    expect(resolveStatePath(host, 'vm1.state')).toBe('/srv/states/vm1.state');
    expect(resolveStatePath(host, '/tmp/../var/x')).toBe('/var/x');
    expect(resolveStatePath({ ...host, statesDir: undefined } as HostConfig, 'a')).toBe('/var/lib/ferry/states/a');
  });
});

describe('withIncomingDefer', () => {
  it('keeps one -incoming defer however many hops the record has seen', () => {
    expect(withIncomingDefer(undefined)).toEqual(['-incoming', 'defer']);
    expect(withIncomingDefer(['-S', '-incoming', 'defer', '-incoming', 'tcp:0:1', '-m', '64'])).toEqual(['-S', '-m', '64', '-incoming', 'defer']);
  });
});
