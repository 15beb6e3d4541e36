/**
 * OpenSSH client configuration (`~/.ssh/config`): a parser, a resolver that applies the
 * OpenSSH rules for one host alias, and a loader that reads the file and its Includes.
 *
 * Semantics follow ssh_config(5) for the parameters Ferry uses (Host, HostName, User, Port,
 * IdentityFile, IdentitiesOnly, ProxyJump, UserKnownHostsFile, StrictHostKeyChecking,
 * ServerAliveInterval, ConnectTimeout); every other keyword is parsed and kept but ignored.
 *
 * Deliberate simplifications:
 * - `Match` blocks are skipped entirely: from a `Match` line up to the next `Host` or
 *   `Match` line nothing applies. The one exception is `Match all`, which is
 *   unconditionally true in OpenSSH and is commonly used to return to "global" options.
 * - Structure (quoting, `Host`/`Match`/`Include` without arguments, Include depth) is
 *   checked by the parser, as OpenSSH does; option values (a bad `Port`, an unparsable
 *   `ProxyJump`, an unknown `%` token) are checked only when they apply to the host being
 *   resolved, so one broken block does not make every other host unusable.
 * - Relative IdentityFile / UserKnownHostsFile paths are taken relative to the home
 *   directory (OpenSSH uses the current directory, which means nothing for a GUI app).
 * - No hostname canonicalisation, no `~otheruser` expansion, no `%C`/`%i`/`%k`/`%L` tokens.
 */
import { readFileSync, readdirSync, statSync } from 'node:fs';
import { isAbsolute, join, posix, resolve as resolvePath } from 'node:path';
import { FerryException } from '../../../shared/errors';

// ---------------------------------------------------------------------------------------
// Types

export type SshConfigItem =
  /** A `Host` line: whitespace-separated patterns, `*`/`?` wildcards, `!` negation. */
  | { kind: 'host'; patterns: string[]; line: number }
  /** A `Match` line; its block is skipped unless the criteria are exactly `all`. */
  | { kind: 'match'; criteria: string[]; line: number }
  /**
   * An `Include` line. `files` is filled by {@link loadSshConfig} (one parsed config per
   * matching file, in glob order); when absent the resolver asks `opts.readInclude`.
   */
  | { kind: 'include'; patterns: string[]; line: number; files?: SshConfig[] }
  /** Any other `Keyword value...` line. `keyword` is lower-cased; quotes are removed. */
  | { kind: 'option'; keyword: string; args: string[]; line: number };

export interface SshConfig {
  /** File name (or any label) used in error messages. */
  source: string;
  items: SshConfigItem[];
}

export interface JumpSpec {
  host: string;
  user?: string;
  port?: number;
}

export interface ResolvedSshHost {
  alias: string;
  /** HostName with %h expanded, or the alias; lower-cased as ssh does. */
  hostName: string;
  user: string;
  port: number;
  /** `~`, `${VAR}` and %d %h %n %p %r %u %l %% expanded; absolute paths. May not exist. */
  identityFiles: string[];
  /** True when no IdentityFile applied and `identityFiles` is OpenSSH's default list. */
  identityFilesDefaulted: boolean;
  identitiesOnly: boolean;
  /** Hops in connection order: `ProxyJump a,b` connects to a, then b, then the target. */
  proxyJump: JumpSpec[];
  /**
   * Set when a `ProxyCommand` (other than `none`) won over ProxyJump. Ferry does not run
   * proxy commands: the caller should refuse rather than connect directly.
   */
  proxyCommand?: string;
  /** Default `[~/.ssh/known_hosts, ~/.ssh/known_hosts2]`; `[]` for `UserKnownHostsFile none`. */
  userKnownHostsFiles: string[];
  /** Normalised to `yes` | `no` | `ask` | `accept-new` (`off`/`false` -> `no`, `true` -> `yes`). */
  strictHostKeyChecking?: string;
  /** Seconds. */
  serverAliveInterval?: number;
  /** Seconds. */
  connectTimeout?: number;
}

export interface ResolveSshHostOptions {
  homeDir: string;
  localUser: string;
  /**
   * Reads the files an `Include` pattern names, for configs that were parsed rather than
   * loaded. Receives the pattern with `~` expanded and made absolute (relative to
   * `~/.ssh`); returns the texts of the matching files in order.
   */
  readInclude?: (pattern: string) => string[];
  /** For `${VAR}` in IdentityFile / UserKnownHostsFile. A missing variable is an error. */
  env?: Record<string, string | undefined>;
  /** For the `%l` token. */
  localHostName?: string;
}

/** Same limit as OpenSSH (READCONF_MAX_DEPTH). */
const MAX_INCLUDE_DEPTH = 16;

const DEFAULT_IDENTITY_NAMES = ['id_rsa', 'id_ecdsa', 'id_ecdsa_sk', 'id_ed25519', 'id_ed25519_sk', 'id_xmss', 'id_dsa'];

// ---------------------------------------------------------------------------------------
// Parsing

function invalid(message: string, where?: { source: string; line: number }, cause?: unknown): FerryException {
  const text = where ? `${where.source} line ${where.line}: ${message}` : message;
  return new FerryException(
    'SSH_CONFIG_INVALID',
    text,
    where ? { file: where.source, line: where.line } : undefined,
    cause === undefined ? undefined : { cause },
  );
}

/**
 * Split the value part of a line like OpenSSH's argv_split(): whitespace separates
 * arguments; "double" and 'single' quotes group; backslash escapes a quote, a backslash or
 * (outside quotes) a space; a `#` at the start of an argument ends the line.
 */
function splitArgs(s: string, where: { source: string; line: number }): string[] {
  const out: string[] = [];
  let i = 0;
  while (i < s.length) {
    while (i < s.length && (s[i] === ' ' || s[i] === '\t')) i++;
    if (i >= s.length || s[i] === '#') break;
    let arg = '';
    let quote: string | null = null;
    for (; i < s.length; i++) {
      const c = s[i]!;
      if (c === '\\') {
        const n = s[i + 1];
        if (n === "'" || n === '"' || n === '\\' || (quote === null && n === ' ')) {
          arg += n;
          i++;
        } else {
          arg += c;
        }
      } else if (quote === null && (c === ' ' || c === '\t')) {
        break;
      } else if (quote === null && (c === '"' || c === "'")) {
        quote = c;
      } else if (quote !== null && c === quote) {
        quote = null;
      } else {
        arg += c;
      }
    }
    if (quote !== null) throw invalid('unterminated quote', where);
    out.push(arg);
  }
  return out;
}

/**
 * Parse the text of an ssh_config file. Throws SSH_CONFIG_INVALID (naming `source` and the
 * line) for broken structure: unterminated quotes, `Host`/`Match`/`Include` without
 * arguments. Option values are validated later, by {@link resolveSshHost}.
 */
export function parseSshConfig(text: string, source = 'ssh_config'): SshConfig {
  const items: SshConfigItem[] = [];
  const lines = text.split('\n');
  for (let n = 0; n < lines.length; n++) {
    const line = n + 1;
    const where = { source, line };
    const raw = lines[n]!.replace(/[\s]+$/, '');
    // Keyword: up to whitespace or '='; then whitespace, at most one '=', whitespace.
    const m = /^[ \t]*([^ \t=]*)[ \t]*(?:=[ \t]*)?(.*)$/.exec(raw);
    if (!m) continue;
    const keywordRaw = m[1]!;
    if (keywordRaw === '' || keywordRaw.startsWith('#')) continue;
    const keyword = keywordRaw.toLowerCase();
    const args = splitArgs(m[2]!, where);
    switch (keyword) {
      case 'host':
        if (args.length === 0) throw invalid('Host without patterns', where);
        items.push({ kind: 'host', patterns: args, line });
        break;
      case 'match':
        if (args.length === 0) throw invalid('Match without criteria', where);
        items.push({ kind: 'match', criteria: args, line });
        break;
      case 'include':
        if (args.length === 0) throw invalid('Include without a path', where);
        items.push({ kind: 'include', patterns: args, line });
        break;
      default:
        items.push({ kind: 'option', keyword, args, line });
    }
  }
  return { source, items };
}

// ---------------------------------------------------------------------------------------
// Patterns

/** Whole-string glob with `*` and `?` (OpenSSH match_pattern). */
export function globMatch(text: string, pattern: string): boolean {
  let t = 0;
  let p = 0;
  let starP = -1;
  let starT = 0;
  while (t < text.length) {
    const pc = pattern[p];
    if (pc === '*') {
      starP = p++;
      starT = t;
    } else if (pc !== undefined && (pc === '?' || pc === text[t])) {
      p++;
      t++;
    } else if (starP >= 0) {
      p = starP + 1;
      t = ++starT;
    } else {
      return false;
    }
  }
  while (pattern[p] === '*') p++;
  return p === pattern.length;
}

/**
 * OpenSSH `Host` semantics: the block applies if some non-negated pattern matches and no
 * negated pattern does. Case-sensitive, like OpenSSH (which matches the alias as typed).
 */
export function hostPatternsMatch(patterns: readonly string[], name: string): boolean {
  let matched = false;
  for (const raw of patterns) {
    const negated = raw.startsWith('!');
    const pat = negated ? raw.slice(1) : raw;
    if (globMatch(name, pat)) {
      if (negated) return false;
      matched = true;
    }
  }
  return matched;
}

// ---------------------------------------------------------------------------------------
// Values

function parsePortValue(s: string): number | null {
  if (!/^[0-9]{1,5}$/.test(s)) return null;
  const n = Number(s);
  return n >= 1 && n <= 65535 ? n : null;
}

/**
 * Parse one ProxyJump hop: `[user@]host[:port]` or `ssh://[user@]host[:port][/]`.
 * IPv6 addresses must be bracketed when a port follows (`[::1]:2222`); a bare IPv6
 * address without a port is also accepted. Throws SSH_CONFIG_INVALID.
 */
export function parseJumpSpec(s: string): JumpSpec {
  const input = s.trim();
  const bad = (why: string): FerryException => invalid(`invalid ProxyJump host ${JSON.stringify(s)}: ${why}`);
  if (input === '') throw bad('empty');
  if (/[\s,]/.test(input)) throw bad('contains whitespace or a comma');
  let rest = input;
  let uri = false;
  if (/^ssh:\/\//i.test(rest)) {
    uri = true;
    rest = rest.slice(6);
    if (rest.endsWith('/')) rest = rest.slice(0, -1);
    if (rest.includes('/')) throw bad('an ssh:// URI may not have a path');
  } else if (rest.includes('://')) {
    throw bad('only ssh:// URIs are supported');
  }
  let user: string | undefined;
  const at = rest.lastIndexOf('@');
  if (at >= 0) {
    user = rest.slice(0, at);
    rest = rest.slice(at + 1);
    if (uri) {
      try {
        user = decodeURIComponent(user);
      } catch {
        throw bad('bad percent-encoding in user');
      }
    }
    if (user === '') throw bad('empty user');
  }
  let host: string;
  let portText: string | undefined;
  if (rest.startsWith('[')) {
    const close = rest.indexOf(']');
    if (close < 0) throw bad('unterminated [');
    host = rest.slice(1, close);
    const after = rest.slice(close + 1);
    if (after !== '') {
      if (!after.startsWith(':')) throw bad('junk after ]');
      portText = after.slice(1);
    }
  } else {
    const colons = rest.split(':').length - 1;
    if (colons === 1) {
      const c = rest.indexOf(':');
      host = rest.slice(0, c);
      portText = rest.slice(c + 1);
    } else if (colons > 1 && !uri) {
      host = rest; // bare IPv6 address, no port
    } else if (colons > 1) {
      throw bad('IPv6 addresses must be in brackets');
    } else {
      host = rest;
    }
  }
  if (host === '' || /[@/[\]]/.test(host)) throw bad('bad host');
  const spec: JumpSpec = { host };
  if (user !== undefined) spec.user = user;
  if (portText !== undefined) {
    const port = parsePortValue(portText);
    if (port === null) throw bad(`bad port ${JSON.stringify(portText)}`);
    spec.port = port;
  }
  return spec;
}

/** OpenSSH convtime(): `90`, `90s`, `1m30s`, `2h`, `1d`, `1w`. Null if malformed. */
function parseTime(s: string): number | null {
  if (!/^([0-9]+[smhdwSMHDW]?)+$/.test(s)) return null;
  const mult: Record<string, number> = { '': 1, s: 1, m: 60, h: 3600, d: 86400, w: 604800 };
  let total = 0;
  for (const part of s.matchAll(/([0-9]+)([smhdwSMHDW]?)/g)) {
    total += Number(part[1]) * mult[part[2]!.toLowerCase()]!;
  }
  return total <= 0x7fffffff ? total : null;
}

function expandTilde(p: string, opts: ResolveSshHostOptions, what: string): string {
  if (!p.startsWith('~')) return p;
  const slash = p.indexOf('/');
  const user = slash < 0 ? p.slice(1) : p.slice(1, slash);
  if (user !== '' && user !== opts.localUser) {
    throw invalid(`${what}: ~${user} is not supported, only ~ (the current user)`);
  }
  return slash < 0 ? opts.homeDir : join(opts.homeDir, p.slice(slash + 1));
}

function expandPercent(s: string, tokens: Record<string, string>, what: string): string {
  let out = '';
  for (let i = 0; i < s.length; i++) {
    const c = s[i]!;
    if (c !== '%') {
      out += c;
      continue;
    }
    const k = s[++i];
    if (k === '%') out += '%';
    else if (k !== undefined && Object.prototype.hasOwnProperty.call(tokens, k)) out += tokens[k];
    else throw invalid(`${what}: unsupported token %${k ?? ''} in ${JSON.stringify(s)}`);
  }
  return out;
}

function expandEnv(s: string, env: Record<string, string | undefined> | undefined, what: string): string {
  return s.replace(/\$\{([^}]*)\}/g, (_, name: string) => {
    const v = env?.[name];
    if (v === undefined) throw invalid(`${what}: environment variable ${name} is not defined`);
    return v;
  });
}

function expandPath(p: string, tokens: Record<string, string>, opts: ResolveSshHostOptions, what: string): string {
  const expanded = expandPercent(expandEnv(expandTilde(p, opts, what), opts.env, what), tokens, what);
  return isAbsolute(expanded) ? expanded : resolvePath(opts.homeDir, expanded);
}

/** An Include pattern made absolute: `~` expanded, relative paths under `~/.ssh`. */
export function expandIncludePattern(pattern: string, homeDir: string): string {
  let p = pattern;
  if (p === '~') p = homeDir;
  else if (p.startsWith('~/')) p = join(homeDir, p.slice(2));
  else if (p.startsWith('~')) throw invalid(`Include ${pattern}: ~user is not supported`);
  return isAbsolute(p) ? p : join(homeDir, '.ssh', p);
}

// ---------------------------------------------------------------------------------------
// Resolution

interface Located {
  args: string[];
  source: string;
  line: number;
}

interface Collected {
  first: Map<string, Located>;
  identityFiles: Located[];
  /** ProxyJump and ProxyCommand share one slot: whichever comes first wins. */
  proxy?: { keyword: 'proxyjump' | 'proxycommand' } & Located;
}

function collect(
  config: SshConfig,
  alias: string,
  opts: ResolveSshHostOptions,
  acc: Collected,
  depth: number,
): void {
  if (depth > MAX_INCLUDE_DEPTH) {
    throw invalid(`Include nested more than ${MAX_INCLUDE_DEPTH} deep (a cycle?)`, { source: config.source, line: 0 });
  }
  let active = true;
  for (const item of config.items) {
    switch (item.kind) {
      case 'host':
        active = hostPatternsMatch(item.patterns, alias);
        break;
      case 'match':
        active = item.criteria.length === 1 && item.criteria[0]!.toLowerCase() === 'all';
        break;
      case 'include': {
        // An Include in an inactive block contributes nothing (OpenSSH SSHCONF_NEVERMATCH).
        if (!active) break;
        let files = item.files;
        if (files === undefined && opts.readInclude) {
          files = [];
          for (const pat of item.patterns) {
            const abs = expandIncludePattern(pat, opts.homeDir);
            opts.readInclude(abs).forEach((text, i) => files!.push(parseSshConfig(text, `${abs}[${i}]`)));
          }
        }
        // Each included file starts active; the includer's state is restored afterwards.
        for (const f of files ?? []) collect(f, alias, opts, acc, depth + 1);
        break;
      }
      case 'option': {
        if (!active) break;
        const loc: Located = { args: item.args, source: config.source, line: item.line };
        const kw = item.keyword;
        if (kw === 'identityfile') {
          acc.identityFiles.push(loc);
        } else if (kw === 'proxyjump' || kw === 'proxycommand') {
          acc.proxy ??= { keyword: kw, ...loc };
        } else if (kw === 'port') {
          // Validated even when a previous Port already won, as OpenSSH does.
          single(loc, 'Port');
          if (parsePortValue(loc.args[0]!) === null) {
            throw invalid(`Bad port ${JSON.stringify(loc.args[0])} (must be 1..65535)`, loc);
          }
          if (!acc.first.has(kw)) acc.first.set(kw, loc);
        } else if (!acc.first.has(kw)) {
          acc.first.set(kw, loc);
        }
        break;
      }
    }
  }
}

function single(loc: Located, name: string): string {
  if (loc.args.length === 0) throw invalid(`${name}: missing argument`, loc);
  if (loc.args.length > 1) throw invalid(`${name}: unexpected extra arguments`, loc);
  return loc.args[0]!;
}

function withLocation<T>(loc: Located, f: () => T): T {
  try {
    return f();
  } catch (e) {
    if (e instanceof FerryException && e.code === 'SSH_CONFIG_INVALID' && e.details?.['file'] === undefined) {
      throw invalid(e.message, loc, e);
    }
    throw e;
  }
}

function parseYesNo(loc: Located, name: string): boolean {
  const v = single(loc, name).toLowerCase();
  if (v === 'yes' || v === 'true') return true;
  if (v === 'no' || v === 'false') return false;
  throw invalid(`${name}: expected yes or no, got ${JSON.stringify(v)}`, loc);
}

function parseSeconds(loc: Located, name: string): number | undefined {
  const v = single(loc, name);
  if (v.toLowerCase() === 'none') return undefined;
  const n = parseTime(v);
  if (n === null) throw invalid(`${name}: bad time ${JSON.stringify(v)}`, loc);
  return n;
}

/**
 * Apply `config` to `alias` the way `ssh alias` would: blocks whose Host patterns match the
 * alias (as typed, case-sensitively, as OpenSSH does) apply in file order, the first value obtained for
 * each parameter wins, IdentityFile accumulates. Throws SSH_CONFIG_INVALID naming the file
 * and line of a value that applies and is invalid.
 */
export function resolveSshHost(config: SshConfig, alias: string, opts: ResolveSshHostOptions): ResolvedSshHost {
  if (alias === '' || /[\s\0]/.test(alias)) {
    throw new FerryException('INVALID_REQUEST', `invalid host alias ${JSON.stringify(alias)}`);
  }
  const acc: Collected = { first: new Map(), identityFiles: [] };
  collect(config, alias, opts, acc, 0);
  const get = (kw: string): Located | undefined => acc.first.get(kw);

  // Like ssh, the final host name is lower-cased (the alias used for matching is not).
  let hostName = alias.toLowerCase();
  const hn = get('hostname');
  if (hn) {
    hostName = withLocation(hn, () => expandPercent(single(hn, 'HostName'), { h: alias }, 'HostName')).toLowerCase();
    if (hostName === '' || /\s/.test(hostName)) throw invalid('HostName is empty or contains whitespace', hn);
  }

  const u = get('user');
  const user = u ? single(u, 'User') : opts.localUser;

  const p = get('port');
  const port = p ? parsePortValue(p.args[0]!)! : 22;

  const tokens: Record<string, string> = {
    d: opts.homeDir,
    h: hostName,
    n: alias,
    p: String(port),
    r: user,
    u: opts.localUser,
  };
  if (opts.localHostName !== undefined) tokens['l'] = opts.localHostName;

  const identityFilesDefaulted = acc.identityFiles.length === 0;
  const identityFiles = identityFilesDefaulted
    ? DEFAULT_IDENTITY_NAMES.map((n) => join(opts.homeDir, '.ssh', n))
    : acc.identityFiles.map((loc) =>
        withLocation(loc, () => expandPath(single(loc, 'IdentityFile'), tokens, opts, 'IdentityFile')),
      );

  const io = get('identitiesonly');
  const identitiesOnly = io ? parseYesNo(io, 'IdentitiesOnly') : false;

  let proxyJump: JumpSpec[] = [];
  let proxyCommand: string | undefined;
  const proxy = acc.proxy;
  if (proxy?.keyword === 'proxyjump') {
    const v = single(proxy, 'ProxyJump');
    if (v.toLowerCase() !== 'none') {
      proxyJump = withLocation(proxy, () => v.split(',').map((hop) => parseJumpSpec(hop)));
    }
  } else if (proxy?.keyword === 'proxycommand') {
    if (proxy.args.length === 0) throw invalid('ProxyCommand: missing argument', proxy);
    const v = proxy.args.join(' ');
    if (v.toLowerCase() !== 'none') proxyCommand = v;
  }

  let userKnownHostsFiles = [join(opts.homeDir, '.ssh', 'known_hosts'), join(opts.homeDir, '.ssh', 'known_hosts2')];
  const ukh = get('userknownhostsfile');
  if (ukh) {
    if (ukh.args.length === 0) throw invalid('UserKnownHostsFile: missing argument', ukh);
    userKnownHostsFiles =
      ukh.args.length === 1 && ukh.args[0]!.toLowerCase() === 'none'
        ? []
        : ukh.args.map((f) => withLocation(ukh, () => expandPath(f, tokens, opts, 'UserKnownHostsFile')));
  }

  const result: ResolvedSshHost = {
    alias,
    hostName,
    user,
    port,
    identityFiles,
    identityFilesDefaulted,
    identitiesOnly,
    proxyJump,
    userKnownHostsFiles,
  };
  if (proxyCommand !== undefined) result.proxyCommand = proxyCommand;

  const shk = get('stricthostkeychecking');
  if (shk) {
    const v = single(shk, 'StrictHostKeyChecking').toLowerCase();
    const map: Record<string, string> = { yes: 'yes', true: 'yes', no: 'no', false: 'no', off: 'no', ask: 'ask', 'accept-new': 'accept-new' };
    const norm = map[v];
    if (norm === undefined) throw invalid(`StrictHostKeyChecking: bad value ${JSON.stringify(v)}`, shk);
    result.strictHostKeyChecking = norm;
  }
  const sai = get('serveraliveinterval');
  if (sai) {
    const v = parseSeconds(sai, 'ServerAliveInterval');
    if (v !== undefined) result.serverAliveInterval = v;
  }
  const ct = get('connecttimeout');
  if (ct) {
    const v = parseSeconds(ct, 'ConnectTimeout');
    if (v !== undefined) result.connectTimeout = v;
  }
  return result;
}

// ---------------------------------------------------------------------------------------
// Loading

function isMissing(e: unknown): boolean {
  const code = (e as NodeJS.ErrnoException | null)?.code;
  return code === 'ENOENT' || code === 'ENOTDIR';
}

function readConfigText(path: string): string | null {
  try {
    return readFileSync(path, 'utf8');
  } catch (e) {
    if (isMissing(e)) return null;
    throw new FerryException('IO_ERROR', `cannot read ssh config ${path}: ${(e as Error).message}`, { path }, { cause: e });
  }
}

/**
 * Expand a path whose last component may contain `*` / `?` into the sorted list of
 * existing regular files it names (like glob(3): a wildcard does not match a leading dot).
 * Wildcards in directory components are not supported (SSH_CONFIG_INVALID).
 */
export function expandGlob(pattern: string): string[] {
  const dir = posix.dirname(pattern);
  const base = posix.basename(pattern);
  if (/[*?]/.test(dir)) throw invalid(`Include ${pattern}: wildcards are only supported in the last path component`);
  if (!/[*?]/.test(base)) return [pattern];
  let names: string[];
  try {
    names = readdirSync(dir);
  } catch (e) {
    if (isMissing(e)) return [];
    throw new FerryException('IO_ERROR', `cannot list ${dir}: ${(e as Error).message}`, { path: dir }, { cause: e });
  }
  return names
    .filter((n) => (base.startsWith('.') || !n.startsWith('.')) && globMatch(n, base))
    .sort()
    .map((n) => join(dir, n))
    .filter((f) => {
      try {
        return statSync(f).isFile();
      } catch {
        return false;
      }
    });
}

function loadIncludes(config: SshConfig, homeDir: string, depth: number): void {
  for (const item of config.items) {
    if (item.kind !== 'include') continue;
    if (depth >= MAX_INCLUDE_DEPTH) {
      throw invalid(`Include nested more than ${MAX_INCLUDE_DEPTH} deep (a cycle?)`, { source: config.source, line: item.line });
    }
    const files: SshConfig[] = [];
    for (const pat of item.patterns) {
      const abs = withLocation({ args: [], source: config.source, line: item.line }, () =>
        expandIncludePattern(pat, homeDir),
      );
      const paths = withLocation({ args: [], source: config.source, line: item.line }, () => expandGlob(abs));
      for (const path of paths) {
        const text = readConfigText(path);
        if (text === null) continue;
        const sub = parseSshConfig(text, path);
        loadIncludes(sub, homeDir, depth + 1);
        files.push(sub);
      }
    }
    item.files = files;
  }
}

/**
 * Read and parse an ssh_config file and, recursively, the files its `Include` lines name
 * (relative paths under `~/.ssh`, `*`/`?` in the last component). A missing file (top level
 * or included) is an empty config; an unreadable one is IO_ERROR.
 */
export function loadSshConfig(path: string, homeDir: string): SshConfig {
  const text = readConfigText(path);
  if (text === null) return { source: path, items: [] };
  const config = parseSshConfig(text, path);
  loadIncludes(config, homeDir, 0);
  return config;
}
