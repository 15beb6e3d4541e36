import { execFileSync } from 'node:child_process';
import { existsSync, mkdtempSync, readdirSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { FerryException } from '../../../shared/errors';
import { quoteArg, quoteArgv } from './shell-quote';

let dir: string;

beforeAll(() => {
  dir = mkdtempSync(join(tmpdir(), 'ferry-shq-'));
});

afterAll(() => {
  rmSync(dir, { recursive: true, force: true });
});

/** Run `printf '%s\0' <quoted args>` through a real /bin/sh in `dir`; return the args it saw. */
function roundTrip(args: string[]): string[] {
  const out = execFileSync('/bin/sh', ['-c', `printf '%s\\0' ${quoteArgv(args)}`], { cwd: dir, env: { ...process.env, HOME: dir } });
  const parts = out.toString('utf8').split('\0');
  expect(parts.pop()).toBe('');
  return parts;
}

const HOSTILE: string[] = [
  'plain',
  'with space',
  '  leading and trailing  ',
  "it's",
  "''",
  "'",
  '"double"',
  '"',
  '$(touch MARK_subst)',
  '`touch MARK_backtick`',
  '$HOME',
  '${HOME}',
  '$((1+2))',
  'a; touch MARK_semi',
  'a | touch MARK_pipe',
  'a && touch MARK_and',
  'a || touch MARK_or',
  '> MARK_redirect',
  '< /etc/passwd',
  'a & touch MARK_bg',
  'line1\nline2\ntouch MARK_newline',
  '\ttab\t',
  '*',
  '*.txt',
  '?',
  '[a-z]',
  '~',
  '~/x',
  '~root',
  'back\\slash',
  '\\',
  '\\n',
  'trailing\\',
  'ünïcødé ✓ 日本語 🚀',
  '-rf',
  '--opt=value',
  '-',
  '',
  '!',
  '!!',
  '#comment',
  'a#b',
  '{a,b}',
  'a=b',
  '%s%n',
  "'\"'\"'$(touch MARK_mixed)'\"",
  '\x01\x02\x1b[31m',
];

describe('quoteArg', () => {
  it('leaves safe words alone', () => {
    for (const s of ['abc', 'ABC_123', '/usr/bin/qemu-system-x86_64', 'a.b,c:d=e@f%g+h-i', '-incoming', '--', '/tmp/x.sock']) {
      expect(quoteArg(s)).toBe(s);
    }
  });

  it('single-quotes everything else', () => {
    expect(quoteArg('a b')).toBe("'a b'");
    expect(quoteArg('$x')).toBe("'$x'");
    expect(quoteArg('~')).toBe("'~'");
    expect(quoteArg('*')).toBe("'*'");
  });

  it("writes ' as '\\''", () => {
    expect(quoteArg("it's")).toBe("'it'\\''s'");
    expect(quoteArg("'")).toBe("''\\'''");
  });

  it("quotes the empty string as ''", () => {
    expect(quoteArg('')).toBe("''");
  });

  it('rejects NUL with INVALID_REQUEST naming the argument', () => {
    try {
      quoteArg('a\0b');
      expect.unreachable();
    } catch (e) {
      expect(e).toBeInstanceOf(FerryException);
      expect((e as FerryException).code).toBe('INVALID_REQUEST');
      expect((e as FerryException).message).toContain('"a\\u0000b"');
    }
  });
});

describe('quoteArgv', () => {
  it('joins quoted args with spaces', () => {
    expect(quoteArgv(['ls', '-l', 'my dir'])).toBe("ls -l 'my dir'");
  });

  it('throws INVALID_REQUEST on an empty argv', () => {
    expect(() => quoteArgv([])).toThrow(FerryException);
    try {
      quoteArgv([]);
    } catch (e) {
      expect((e as FerryException).code).toBe('INVALID_REQUEST');
    }
  });

  it('names the index of an argument containing NUL', () => {
    try {
      quoteArgv(['echo', 'ok', 'bad\0']);
      expect.unreachable();
    } catch (e) {
      expect((e as FerryException).code).toBe('INVALID_REQUEST');
      expect((e as FerryException).message).toContain('argument 2');
      expect((e as FerryException).details).toMatchObject({ index: 2 });
    }
  });

  it('quotes a first word that the shell would read as an assignment or reserved word', () => {
    expect(quoteArgv(['A=b', 'c=d'])).toBe("'A=b' c=d");
    expect(quoteArgv(['if', 'then'])).toBe("'if' then");
    expect(quoteArgv(['ls'])).toBe('ls');
  });

  it('runs a quoted assignment-like argv[0] as a command, not an assignment', () => {
    const r = (() => {
      try {
        execFileSync('/bin/sh', ['-c', quoteArgv(['FERRY_X=1', 'true'])], { cwd: dir, stdio: 'pipe' });
        return 0;
      } catch (e) {
        return (e as { status: number }).status;
      }
    })();
    expect(r).toBe(127); // command not found: it was not treated as `FERRY_X=1 true`
  });
});

describe('round trip through /bin/sh', () => {
  it.each(HOSTILE.map((s) => [JSON.stringify(s), s] as const))('%s survives byte-exact', (_label, s) => {
    expect(roundTrip([s])).toEqual([s]);
    expect(readdirSync(dir).filter((n) => n.startsWith('MARK'))).toEqual([]);
  });

  it('survives all hostile strings in one argv, in order', () => {
    expect(roundTrip(HOSTILE)).toEqual(HOSTILE);
  });

  it.each(['/bin/bash', '/bin/dash', '/usr/bin/zsh', '/bin/ksh'].filter((sh) => existsSync(sh)))(
    'also survives byte-exact under %s',
    (sh) => {
      const out = execFileSync(sh, ['-c', `printf '%s\\0' ${quoteArgv(HOSTILE)}`], { cwd: dir });
      expect(out.toString('utf8').split('\0').slice(0, -1)).toEqual(HOSTILE);
      expect(readdirSync(dir).filter((n) => n.startsWith('MARK'))).toEqual([]);
    },
  );

  it('preserves raw bytes of multi-byte UTF-8', () => {
    const s = 'é🚀\u2028\u00a0';
    const out = execFileSync('/bin/sh', ['-c', `printf '%s' ${quoteArg(s)}`], { cwd: dir });
    expect(out.equals(Buffer.from(s, 'utf8'))).toBe(true);
  });

  it('never executes the payloads (no marker file is created)', () => {
    roundTrip(HOSTILE);
    for (const s of HOSTILE) roundTrip([s]);
    expect(readdirSync(dir).filter((n) => n.startsWith('MARK'))).toEqual([]);
    expect(existsSync(join(dir, 'MARK_subst'))).toBe(false);
  });

  it('control: the same payload unquoted does create the marker', () => {
    execFileSync('/bin/sh', ['-c', 'printf "%s" $(touch MARK_control)'], { cwd: dir });
    expect(existsSync(join(dir, 'MARK_control'))).toBe(true);
    rmSync(join(dir, 'MARK_control'));
  });
});
