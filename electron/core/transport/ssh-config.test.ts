import { execFileSync } from 'node:child_process';
import { existsSync, mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir, userInfo } from 'node:os';
import { join } from 'node:path';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { FerryException } from '../../../shared/errors';
import type { ResolveSshHostOptions, SshConfig } from './ssh-config';
import { expandGlob, globMatch, hostPatternsMatch, loadSshConfig, parseJumpSpec, parseSshConfig, resolveSshHost } from './ssh-config';

const HOME = '/home/alice';
const OPTS: ResolveSshHostOptions = { homeDir: HOME, localUser: 'alice' };

function resolve(text: string, alias: string, opts: Partial<ResolveSshHostOptions> = {}) {
  return resolveSshHost(parseSshConfig(text, '/home/alice/.ssh/config'), alias, { ...OPTS, ...opts });
}

function ferryError(f: () => unknown): FerryException {
  try {
    f();
  } catch (e) {
    expect(e).toBeInstanceOf(FerryException);
    return e as FerryException;
  }
  throw new Error('expected a FerryException');
}

const REALISTIC = `
# ~/.ssh/config of a migration lab
Host bastion
    HostName bastion.example.com
    User jump
    Port 2200

Host prod-* !prod-legacy
    User deploy
    IdentityFile ~/.ssh/prod_ed25519
    ProxyJump bastion
    IdentitiesOnly yes

Host prod-db1
    HostName 10.0.0.5
    Port 5022
    User dbadmin
    IdentityFile %d/.ssh/db_key

Host *.lab
    HostName %h.internal

Host *
    User fallback
    IdentityFile ~/.ssh/id_%r@%h_%p
    ServerAliveInterval 30
    ConnectTimeout 1m
    StrictHostKeyChecking accept-new
`;

describe('resolveSshHost: defaults', () => {
  it('uses the alias, the local user and port 22 when nothing applies', () => {
    const r = resolve('', 'vm1.example');
    expect(r).toEqual({
      alias: 'vm1.example',
      hostName: 'vm1.example',
      user: 'alice',
      port: 22,
      identityFiles: ['id_rsa', 'id_ecdsa', 'id_ecdsa_sk', 'id_ed25519', 'id_ed25519_sk', 'id_xmss', 'id_dsa'].map(
        (n) => `${HOME}/.ssh/${n}`,
      ),
      identityFilesDefaulted: true,
      identitiesOnly: false,
      proxyJump: [],
      userKnownHostsFiles: [`${HOME}/.ssh/known_hosts`, `${HOME}/.ssh/known_hosts2`],
    });
  });

  it('rejects an empty or whitespace alias', () => {
    expect(ferryError(() => resolve('', '')).code).toBe('INVALID_REQUEST');
    expect(ferryError(() => resolve('', 'a b')).code).toBe('INVALID_REQUEST');
  });
});

describe('resolveSshHost: a realistic config', () => {
  it('applies first-wins across matching blocks and accumulates IdentityFile', () => {
    const r = resolve(REALISTIC, 'prod-db1');
    expect(r.hostName).toBe('10.0.0.5');
    expect(r.user).toBe('deploy'); // from "prod-*", before "prod-db1" said dbadmin
    expect(r.port).toBe(5022);
    expect(r.identityFiles).toEqual([
      `${HOME}/.ssh/prod_ed25519`,
      `${HOME}/.ssh/db_key`,
      `${HOME}/.ssh/id_deploy@10.0.0.5_5022`,
    ]);
    expect(r.identityFilesDefaulted).toBe(false);
    expect(r.identitiesOnly).toBe(true);
    expect(r.proxyJump).toEqual([{ host: 'bastion' }]);
    expect(r.serverAliveInterval).toBe(30);
    expect(r.connectTimeout).toBe(60);
    expect(r.strictHostKeyChecking).toBe('accept-new');
  });

  it('a negated pattern excludes the block even though prod-* matches', () => {
    const r = resolve(REALISTIC, 'prod-legacy');
    expect(r.user).toBe('fallback');
    expect(r.proxyJump).toEqual([]);
    expect(r.identitiesOnly).toBe(false);
    expect(r.identityFiles).toEqual([`${HOME}/.ssh/id_fallback@prod-legacy_22`]);
  });

  it('matches Host against the alias, not the HostName', () => {
    // bastion's HostName is bastion.example.com, which does not match *.lab etc.
    const r = resolve(REALISTIC, 'bastion');
    expect(r).toMatchObject({ hostName: 'bastion.example.com', user: 'jump', port: 2200 });
    const cfg = 'Host real.example.com\n  User nope\nHost short\n  HostName real.example.com\n';
    expect(resolve(cfg, 'short').user).toBe('alice');
  });

  it('expands %h in HostName to the alias', () => {
    expect(resolve(REALISTIC, 'web.lab').hostName).toBe('web.lab.internal');
  });

  it('matches patterns case-sensitively (as OpenSSH) and lower-cases the host name', () => {
    const r = resolve(REALISTIC, 'PROD-Web');
    expect(r.user).toBe('fallback');
    expect(r.alias).toBe('PROD-Web');
    expect(r.hostName).toBe('prod-web');
    const cfg = 'Host *.Lab\n  HostName %h.Internal\n  User u1\n';
    expect(resolve(cfg, 'web.Lab')).toMatchObject({ user: 'u1', hostName: 'web.lab.internal' });
    expect(resolve(cfg, 'web.lab')).toMatchObject({ user: 'alice', hostName: 'web.lab' });
  });

  it('supports ? wildcards', () => {
    const cfg = 'Host vm?\n  User q\n';
    expect(resolve(cfg, 'vm1').user).toBe('q');
    expect(resolve(cfg, 'vm12').user).toBe('alice');
  });

  it('global options before the first Host apply to every host and win', () => {
    const cfg = 'User early\nPort 2022\nHost x\n  User late\n  Port 3\n';
    expect(resolve(cfg, 'x')).toMatchObject({ user: 'early', port: 2022 });
  });

  it('a block whose patterns are all negated never applies', () => {
    expect(resolve('Host !x\n  User n\n', 'y').user).toBe('alice');
  });
});

describe('parseSshConfig: syntax', () => {
  it('accepts Key=Value, "Key = Value" and any keyword case', () => {
    const cfg = 'HOST=box\n  hOsTnAmE=box.example\n  Port = 2222\n  user= bob\n  IdentityFile =~/.ssh/k\n';
    expect(resolve(cfg, 'box')).toMatchObject({
      hostName: 'box.example',
      port: 2222,
      user: 'bob',
      identityFiles: [`${HOME}/.ssh/k`],
    });
  });

  it('keeps = inside values', () => {
    const c = parseSshConfig('SetEnv A=b C=d\n');
    expect(c.items).toEqual([{ kind: 'option', keyword: 'setenv', args: ['A=b', 'C=d'], line: 1 }]);
  });

  it('handles quoted values, escapes and trailing comments', () => {
    const cfg = [
      'Host box "other box"',
      '  IdentityFile "~/.ssh/my key"   # a comment',
      "  IdentityFile '/keys/it''s'",
      '  IdentityFile /keys/back\\ slash',
      '  User "bob"#not-a-comment',
    ].join('\n');
    const r = resolve(cfg, 'box');
    expect(r.identityFiles).toEqual([`${HOME}/.ssh/my key`, '/keys/its', '/keys/back slash']);
    const c = parseSshConfig(cfg);
    expect(c.items[0]).toEqual({ kind: 'host', patterns: ['box', 'other box'], line: 1 });
    expect(c.items[4]).toMatchObject({ args: ['bob#not-a-comment'] });
  });

  it('skips comments, blank lines, indentation and CRLF', () => {
    const c = parseSshConfig('# c\r\n\r\n   \t\r\n  # indented comment\r\nHost a\r\n\tUser u\r\n');
    expect(c.items).toEqual([
      { kind: 'host', patterns: ['a'], line: 5 },
      { kind: 'option', keyword: 'user', args: ['u'], line: 6 },
    ]);
  });

  it('rejects an unterminated quote naming the file and line', () => {
    const e = ferryError(() => parseSshConfig('Host a\n  User "bob\n', '/x/config'));
    expect(e.code).toBe('SSH_CONFIG_INVALID');
    expect(e.message).toContain('/x/config line 2');
    expect(e.details).toEqual({ file: '/x/config', line: 2 });
  });

  it('rejects Host, Match and Include without arguments', () => {
    for (const line of ['Host', 'Host   # only a comment', 'Match', 'Include']) {
      expect(ferryError(() => parseSshConfig(line)).code).toBe('SSH_CONFIG_INVALID');
    }
  });

  it('keeps unknown keywords without complaint', () => {
    const r = resolve('Host a\n  ForwardAgent yes\n  SomeFutureOption 1\n  User u\n', 'a');
    expect(r.user).toBe('u');
  });
});

describe('Match blocks are skipped', () => {
  const cfg = `
Host a
  User ua
Match host a
  User matched
  Port 9999
  IdentityFile ~/.ssh/matched
Host a
  Port 2
Match exec "true"
  Port 3
  ConnectTimeout 5
Match all
  IdentitiesOnly yes
`;

  it('ignores everything from Match to the next Host or Match', () => {
    const r = resolve(cfg, 'a');
    expect(r.user).toBe('ua');
    expect(r.port).toBe(2);
    expect(r.identityFiles).toEqual(expect.not.arrayContaining([`${HOME}/.ssh/matched`]));
    expect(r.connectTimeout).toBeUndefined();
  });

  it('treats "Match all" as always true', () => {
    expect(resolve(cfg, 'a').identitiesOnly).toBe(true);
    expect(resolve(cfg, 'zzz').identitiesOnly).toBe(true);
  });

  it('does not validate values inside a skipped Match block', () => {
    expect(resolve('Match host a\n  Port 0\n', 'a').port).toBe(22);
  });
});

describe('Port validation', () => {
  it.each(['0', '65536', '-1', 'abc', '22x', '99999999'])('rejects Port %s with file and line', (p) => {
    const e = ferryError(() => resolve(`Host a\n\n  Port ${p}\n`, 'a'));
    expect(e.code).toBe('SSH_CONFIG_INVALID');
    expect(e.message).toContain('/home/alice/.ssh/config line 3');
    expect(e.details).toEqual({ file: '/home/alice/.ssh/config', line: 3 });
  });

  it('accepts 1 and 65535', () => {
    expect(resolve('Port 1\n', 'a').port).toBe(1);
    expect(resolve('Port 65535\n', 'a').port).toBe(65535);
  });

  it('ignores a bad Port in a block that does not apply', () => {
    expect(resolve('Host other\n  Port 0\n', 'a').port).toBe(22);
  });

  it('rejects a bad later Port in an applying block even after a good one (as OpenSSH)', () => {
    expect(ferryError(() => resolve('Host a\n  Port 2\nHost *\n  Port 70000\n', 'a')).code).toBe('SSH_CONFIG_INVALID');
  });

  it('rejects Port with extra arguments or none', () => {
    expect(ferryError(() => resolve('Port 22 23\n', 'a')).code).toBe('SSH_CONFIG_INVALID');
    expect(ferryError(() => resolve('Port\n', 'a')).code).toBe('SSH_CONFIG_INVALID');
  });
});

describe('ProxyJump', () => {
  it('parses a chain in connection order', () => {
    const r = resolve('Host t\n  ProxyJump alice@j1:2201,ssh://bob@j2:2202/,[::1]:2222,j4\n', 't');
    expect(r.proxyJump).toEqual([
      { host: 'j1', user: 'alice', port: 2201 },
      { host: 'j2', user: 'bob', port: 2202 },
      { host: '::1', port: 2222 },
      { host: 'j4' },
    ]);
  });

  it('"none" as the first value disables later ones', () => {
    expect(resolve('Host t\n  ProxyJump none\nHost *\n  ProxyJump j\n', 't').proxyJump).toEqual([]);
    expect(resolve('Host t\n  ProxyJump NONE\n', 't').proxyJump).toEqual([]);
  });

  it('first value wins', () => {
    expect(resolve('Host t\n  ProxyJump a\nHost *\n  ProxyJump b\n', 't').proxyJump).toEqual([{ host: 'a' }]);
  });

  it('ProxyJump and ProxyCommand share one slot: the first wins', () => {
    const a = resolve('Host t\n  ProxyCommand ssh -W %h:%p gw\n  ProxyJump j\n', 't');
    expect(a.proxyJump).toEqual([]);
    expect(a.proxyCommand).toBe('ssh -W %h:%p gw');
    const b = resolve('Host t\n  ProxyJump j\n  ProxyCommand ssh -W %h:%p gw\n', 't');
    expect(b.proxyJump).toEqual([{ host: 'j' }]);
    expect(b.proxyCommand).toBeUndefined();
    const c = resolve('Host t\n  ProxyCommand none\n  ProxyJump j\n', 't');
    expect(c.proxyJump).toEqual([]);
    expect(c.proxyCommand).toBeUndefined();
  });

  it('reports a bad hop with the file and line', () => {
    const e = ferryError(() => resolve('Host t\n  ProxyJump ok,bad:0\n', 't'));
    expect(e.code).toBe('SSH_CONFIG_INVALID');
    expect(e.details).toEqual({ file: '/home/alice/.ssh/config', line: 2 });
    expect(e.message).toContain('bad:0');
  });
});

describe('parseJumpSpec', () => {
  it.each([
    ['host', { host: 'host' }],
    ['user@host', { host: 'host', user: 'user' }],
    ['host:2222', { host: 'host', port: 2222 }],
    ['user@host:2222', { host: 'host', user: 'user', port: 2222 }],
    ['ssh://host', { host: 'host' }],
    ['SSH://user@host:22/', { host: 'host', user: 'user', port: 22 }],
    ['ssh://us%40er@host', { host: 'host', user: 'us@er' }],
    ['[::1]:2222', { host: '::1', port: 2222 }],
    ['[::1]', { host: '::1' }],
    ['::1', { host: '::1' }],
    ['root@[fe80::1%eth0]:22', { host: 'fe80::1%eth0', user: 'root', port: 22 }],
    ['ssh://root@[2001:db8::2]:2200', { host: '2001:db8::2', user: 'root', port: 2200 }],
    ['a@b@host', { host: 'host', user: 'a@b' }],
    ['10.0.0.1:65535', { host: '10.0.0.1', port: 65535 }],
    ['  padded  ', { host: 'padded' }],
  ])('%s', (input, expected) => {
    expect(parseJumpSpec(input)).toEqual(expected);
  });

  it.each(['', ' ', '@host', 'host:', 'host:0', 'host:65536', 'host:abc', 'ssh://h/path', 'http://h', '[::1', '[::1]x', 'ssh://::1', 'a b', 'a,b', 'user@'])(
    'rejects %j',
    (input) => {
      expect(ferryError(() => parseJumpSpec(input)).code).toBe('SSH_CONFIG_INVALID');
    },
  );
});

describe('paths and tokens', () => {
  it('expands ~, %d %h %n %p %r %u %l %% and makes relative paths absolute under home', () => {
    const cfg = [
      'Host a',
      '  HostName real.example',
      '  User bob',
      '  Port 2022',
      '  IdentityFile ~',
      '  IdentityFile ~alice/k',
      '  IdentityFile %d/x_%h_%n_%p_%r_%u_%l_100%%',
      '  IdentityFile keys/rel',
      '  IdentityFile ${KEYDIR}/k',
    ].join('\n');
    const r = resolve(cfg, 'a', { localHostName: 'ws', env: { KEYDIR: '/opt/keys' } });
    expect(r.identityFiles).toEqual([
      HOME,
      `${HOME}/k`,
      `${HOME}/x_real.example_a_2022_bob_alice_ws_100%`,
      `${HOME}/keys/rel`,
      '/opt/keys/k',
    ]);
  });

  it('rejects unknown tokens, ~otheruser and undefined env vars, with location', () => {
    for (const v of ['~/.ssh/%Z', '~/.ssh/trailing%', '~bob/.ssh/k', '${NOPE}/k']) {
      const e = ferryError(() => resolve(`Host a\n  IdentityFile ${v}\n`, 'a'));
      expect(e.code).toBe('SSH_CONFIG_INVALID');
      expect(e.details).toEqual({ file: '/home/alice/.ssh/config', line: 2 });
    }
    expect(ferryError(() => resolve('HostName %p.x\n', 'a')).code).toBe('SSH_CONFIG_INVALID');
  });

  it('UserKnownHostsFile: several files, first line wins, none -> []', () => {
    expect(resolve('UserKnownHostsFile ~/.ssh/kh1 /etc/kh2 %d/kh_%h\nUserKnownHostsFile /ignored\n', 'a').userKnownHostsFiles).toEqual([
      `${HOME}/.ssh/kh1`,
      '/etc/kh2',
      `${HOME}/kh_a`,
    ]);
    expect(resolve('UserKnownHostsFile none\n', 'a').userKnownHostsFiles).toEqual([]);
  });
});

describe('other parameters', () => {
  it.each([
    ['yes', 'yes'],
    ['TRUE', 'yes'],
    ['no', 'no'],
    ['off', 'no'],
    ['false', 'no'],
    ['ask', 'ask'],
    ['accept-new', 'accept-new'],
  ])('StrictHostKeyChecking %s -> %s', (v, out) => {
    expect(resolve(`StrictHostKeyChecking ${v}\n`, 'a').strictHostKeyChecking).toBe(out);
  });

  it('rejects bad values', () => {
    for (const line of ['StrictHostKeyChecking maybe', 'IdentitiesOnly perhaps', 'ServerAliveInterval 5x', 'ConnectTimeout -1']) {
      expect(ferryError(() => resolve(`${line}\n`, 'a')).code).toBe('SSH_CONFIG_INVALID');
    }
  });

  it('parses times like OpenSSH', () => {
    expect(resolve('ConnectTimeout 1m30s\nServerAliveInterval 0\n', 'a')).toMatchObject({ connectTimeout: 90, serverAliveInterval: 0 });
    expect(resolve('ConnectTimeout 2h\n', 'a').connectTimeout).toBe(7200);
    expect(resolve('ConnectTimeout none\n', 'a').connectTimeout).toBeUndefined();
  });
});

describe('Include', () => {
  let home: string;
  let sshDir: string;

  beforeEach(() => {
    home = mkdtempSync(join(tmpdir(), 'ferry-sshcfg-'));
    sshDir = join(home, '.ssh');
    mkdirSync(join(sshDir, 'config.d'), { recursive: true });
  });

  afterEach(() => {
    rmSync(home, { recursive: true, force: true });
  });

  const load = () => loadSshConfig(join(sshDir, 'config'), home);
  const res = (cfg: SshConfig, alias: string) => resolveSshHost(cfg, alias, { homeDir: home, localUser: 'alice' });

  it('resolves relative patterns under ~/.ssh, globs in sorted order, skips dotfiles and missing files', () => {
    writeFileSync(join(sshDir, 'config'), 'Include config.d/* missing.conf ~/.ssh/extra\nHost *\n  User main\n');
    writeFileSync(join(sshDir, 'config.d', '20-b'), 'Host web\n  User from-b\n  Port 2020\n');
    writeFileSync(join(sshDir, 'config.d', '10-a'), 'Host web\n  User from-a\n');
    writeFileSync(join(sshDir, 'config.d', '.hidden'), 'Host *\n  User hidden\n');
    mkdirSync(join(sshDir, 'config.d', 'subdir'));
    writeFileSync(join(sshDir, 'extra'), 'Host db\n  HostName db.internal\n');
    const cfg = load();
    expect(res(cfg, 'web')).toMatchObject({ user: 'from-a', port: 2020 });
    expect(res(cfg, 'db')).toMatchObject({ user: 'main', hostName: 'db.internal' });
    expect(res(cfg, 'other').user).toBe('main');
  });

  it('an Include inside a Host block applies only to that host, and state is restored after it', () => {
    writeFileSync(join(sshDir, 'config'), `Host lab\n  Include ${join(sshDir, 'lab.conf')}\n  Port 2222\nHost *\n  Port 2200\n`);
    // The included file's own Host line must not leak into the includer's remaining lines.
    writeFileSync(join(sshDir, 'lab.conf'), 'User labber\nHost nomatch\n  IdentityFile ~/nope\n');
    const cfg = load();
    expect(res(cfg, 'lab')).toMatchObject({ user: 'labber', port: 2222, identityFilesDefaulted: true });
    expect(res(cfg, 'other')).toMatchObject({ user: 'alice', port: 2200 });
  });

  it('included values obey first-wins relative to the includer', () => {
    writeFileSync(join(sshDir, 'config'), 'Host a\n  User before\nInclude inc\nHost a\n  Port 1\n');
    writeFileSync(join(sshDir, 'inc'), 'Host a\n  User included\n  Port 2\n');
    expect(res(load(), 'a')).toMatchObject({ user: 'before', port: 2 });
  });

  it('reports a bad Port in an included file by that file and line', () => {
    writeFileSync(join(sshDir, 'config'), 'Include inc\n');
    writeFileSync(join(sshDir, 'inc'), '\nHost a\n  Port 0\n');
    const e = ferryError(() => res(load(), 'a'));
    expect(e.details).toEqual({ file: join(sshDir, 'inc'), line: 3 });
  });

  it('detects an Include cycle', () => {
    writeFileSync(join(sshDir, 'config'), 'Include config\n');
    expect(ferryError(() => load()).code).toBe('SSH_CONFIG_INVALID');
  });

  it('rejects wildcards outside the last path component', () => {
    writeFileSync(join(sshDir, 'config'), 'Include */x\n');
    const e = ferryError(() => load());
    expect(e.code).toBe('SSH_CONFIG_INVALID');
    expect(e.details).toEqual({ file: join(sshDir, 'config'), line: 1 });
  });

  it('uses readInclude for parsed configs, with the absolute pattern', () => {
    const seen: string[] = [];
    const cfg = parseSshConfig('Include conf.d/*.conf /abs/x\nHost *\n  User main\n');
    const r = resolveSshHost(cfg, 'x', {
      homeDir: '/home/alice',
      localUser: 'alice',
      readInclude: (p) => {
        seen.push(p);
        return p === '/abs/x' ? ['Host x\n  User abs\n'] : ['Host y\n  User no\n', 'Host x\n  Port 7\n'];
      },
    });
    expect(seen).toEqual(['/home/alice/.ssh/conf.d/*.conf', '/abs/x']);
    expect(r).toMatchObject({ user: 'abs', port: 7 });
  });

  it('ignores an Include in a block that does not apply (readInclude not called)', () => {
    let called = false;
    const cfg = parseSshConfig('Host other\n  Include foo\n');
    resolveSshHost(cfg, 'x', { ...OPTS, readInclude: () => ((called = true), []) });
    expect(called).toBe(false);
  });
});

describe('loadSshConfig', () => {
  let dir: string;
  beforeEach(() => {
    dir = mkdtempSync(join(tmpdir(), 'ferry-sshcfg-'));
  });
  afterEach(() => {
    rmSync(dir, { recursive: true, force: true });
  });

  it('returns an empty config for a missing file', () => {
    expect(loadSshConfig(join(dir, 'nope', 'config'), dir)).toEqual({ source: join(dir, 'nope', 'config'), items: [] });
  });

  it('throws IO_ERROR for an unreadable file', () => {
    mkdirSync(join(dir, 'config')); // a directory: EISDIR
    expect(ferryError(() => loadSshConfig(join(dir, 'config'), dir)).code).toBe('IO_ERROR');
  });

  it('parses a file with the path as source', () => {
    writeFileSync(join(dir, 'config'), 'Host a\n  Port 0\n');
    const e = ferryError(() => resolveSshHost(loadSshConfig(join(dir, 'config'), dir), 'a', OPTS));
    expect(e.message).toContain(`${join(dir, 'config')} line 2`);
  });
});

describe('helpers', () => {
  it('globMatch', () => {
    expect(globMatch('abc', 'a*c')).toBe(true);
    expect(globMatch('abc', '*')).toBe(true);
    expect(globMatch('', '*')).toBe(true);
    expect(globMatch('abc', 'a?c')).toBe(true);
    expect(globMatch('abbbc', 'a*b*c')).toBe(true);
    expect(globMatch('abc', 'a?')).toBe(false);
    expect(globMatch('ab', 'a*bc')).toBe(false);
    expect(globMatch('a.b', 'a[.]b')).toBe(false);
  });

  it('hostPatternsMatch', () => {
    expect(hostPatternsMatch(['*.example.com', '!bad.example.com'], 'ok.example.com')).toBe(true);
    expect(hostPatternsMatch(['*.example.com', '!bad.example.com'], 'bad.example.com')).toBe(false);
    expect(hostPatternsMatch(['!bad.example.com', '*.example.com'], 'bad.example.com')).toBe(false);
    expect(hostPatternsMatch(['!x'], 'y')).toBe(false);
  });

  it('expandGlob of a literal path returns it even if missing', () => {
    expect(expandGlob('/no/such/file')).toEqual(['/no/such/file']);
    expect(expandGlob('/no/such/dir/*')).toEqual([]);
  });
});

describe.skipIf(!existsSync('/usr/bin/ssh'))('agrees with `ssh -G`', () => {
  // No Match blocks and no Include here: those are where we deliberately differ or need ~.
  const CFG = `
Host bastion
    HostName Bastion.Example.com
    User jump
    Port 2200
Host prod-* !prod-legacy
    User deploy
    ProxyJump bastion,ops@gw2:2022
    IdentityFile /k/prod
Host prod-db1
    HostName 10.0.0.5
    Port=5022
    User dbadmin
    IdentityFile /k/db_%r
Host *.lab
    HostName %h.internal
    ProxyJump none
Host *
    User fallback
    IdentityFile /k/id_%r@%h_%p
    ServerAliveInterval 30
    ConnectTimeout 1m30s
`;
  let dir: string;
  beforeEach(() => {
    dir = mkdtempSync(join(tmpdir(), 'ferry-sshg-'));
    writeFileSync(join(dir, 'config'), CFG);
  });
  afterEach(() => {
    rmSync(dir, { recursive: true, force: true });
  });

  it.each(['prod-db1', 'prod-legacy', 'PROD-Web', 'prod-web', 'web.lab', 'Web.LAB', 'bastion', 'x'])('%s', (alias) => {
    const out = execFileSync('/usr/bin/ssh', ['-G', '-F', join(dir, 'config'), alias], { stdio: ['ignore', 'pipe', 'ignore'] }).toString();
    const g = new Map<string, string[]>();
    for (const line of out.split('\n')) {
      const sp = line.indexOf(' ');
      if (sp < 0) continue;
      const k = line.slice(0, sp);
      g.set(k, [...(g.get(k) ?? []), line.slice(sp + 1)]);
    }
    const local = userInfo().username;
    const r = resolveSshHost(parseSshConfig(CFG, 'cfg'), alias, { homeDir: '/home/x', localUser: local });
    expect(r.hostName).toBe(g.get('hostname')?.[0]);
    expect(r.user).toBe(g.get('user')?.[0]);
    expect(String(r.port)).toBe(g.get('port')?.[0]);
    expect(String(r.serverAliveInterval)).toBe(g.get('serveraliveinterval')?.[0]);
    expect(String(r.connectTimeout)).toBe(g.get('connecttimeout')?.[0]);
    // ssh -G prints IdentityFile unexpanded; compare the count and the literal prefix.
    expect(r.identityFiles.length).toBe(g.get('identityfile')?.length);
    const pj = g.get('proxyjump')?.[0];
    const ours = r.proxyJump.map((j) => `${j.user ? `${j.user}@` : ''}${j.host}${j.port ? `:${j.port}` : ''}`).join(',');
    expect(ours).toBe(pj ?? '');
  });
});
