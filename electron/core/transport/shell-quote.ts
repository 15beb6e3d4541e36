/**
 * POSIX sh quoting for argv that has to travel as one command string (ssh `exec`).
 *
 * This is the only place an argv is turned into shell text: every remote command goes
 * through {@link quoteArgv}, never through string interpolation.
 *
 * The remote login shell is assumed to be POSIX (sh, bash, dash, zsh, ksh). csh/tcsh and
 * fish parse single quotes differently (newlines, backslashes) and are not supported.
 */
import { FerryException } from '../../../shared/errors';

/** Characters that no POSIX shell treats specially, anywhere in a word. */
const SAFE = /^[A-Za-z0-9_/.,:=@%+-]+$/;

/**
 * Quote one argument for POSIX sh. Safe words are returned unchanged; everything else is
 * wrapped in single quotes, with each `'` written as `'\''`. The empty string becomes `''`.
 * A NUL byte cannot be carried by argv at all, so it is rejected rather than truncated.
 */
export function quoteArg(arg: string, index?: number): string {
  if (arg.includes('\0')) {
    const where = index === undefined ? 'argument' : `argument ${index}`;
    throw new FerryException('INVALID_REQUEST', `${where} contains a NUL byte: ${JSON.stringify(arg)}`, {
      ...(index === undefined ? {} : { index }),
      arg,
    });
  }
  if (arg === '') return "''";
  if (SAFE.test(arg)) return arg;
  return `'${arg.replace(/'/g, `'\\''`)}'`;
}

/**
 * Words that the shell would not run as a command when they appear unquoted in command
 * position. Quoting them (`'if'`) makes the shell look them up as an ordinary command.
 */
const RESERVED_WORDS = new Set([
  'if', 'then', 'else', 'elif', 'fi', 'do', 'done', 'case', 'esac', 'while', 'until', 'for',
  'in', 'function', 'select', 'time', 'coproc', 'repeat', 'foreach', 'end',
]);

/**
 * Quote every argument and join them with single spaces. An empty argv is an error.
 *
 * The first word is quoted even when its characters are safe if, unquoted, the shell would
 * read it as something other than a command name: a variable assignment (`A=b`) or a
 * reserved word (`if`). `argv[0]` therefore always names the program to run.
 */
export function quoteArgv(argv: readonly string[]): string {
  if (argv.length === 0) {
    throw new FerryException('INVALID_REQUEST', 'cannot run an empty argv');
  }
  return argv
    .map((a, i) => {
      const q = quoteArg(a, i);
      if (i === 0 && q === a && (a.includes('=') || RESERVED_WORDS.has(a))) return `'${a}'`;
      return q;
    })
    .join(' ');
}
