/**
 * OpenSSH `known_hosts`: parsing, a pure host-key check that fails closed, and appending a
 * newly accepted key.
 *
 * The check ({@link checkHostKey}) never trusts anything it cannot prove: a key is trusted
 * only when an applicable plain entry holds exactly the same key blob. Certificates
 * (`@cert-authority`) are not supported and such lines never make a key trusted.
 */
import { createHash, createHmac, randomBytes, timingSafeEqual } from 'node:crypto';
import { mkdir, open, readFile } from 'node:fs/promises';
import { dirname } from 'node:path';
import { FerryException } from '../../../shared/errors';
import { globMatch } from './ssh-config';

export interface KnownHostEntry {
  /** `@revoked` / `@cert-authority` marker, if any. */
  marker?: 'revoked' | 'cert-authority';
  /** The host field exactly as written (a pattern list, or `|1|salt|hash`). */
  hosts: string;
  /** Comma-separated patterns of the host field; empty for a hashed entry. */
  patterns: string[];
  /** Set for a hashed entry: HMAC-SHA1 keyed by `salt` over the lookup name. */
  hashed?: { salt: Buffer; hash: Buffer };
  /** Key type as written, e.g. `ssh-ed25519`; always equal to the type inside `keyBlob`. */
  keyType: string;
  /** The decoded public key blob (SSH wire format). */
  keyBlob: Buffer;
  comment?: string;
  /** 1-based line number in its source. */
  line: number;
  source?: string;
}

export type HostKeyVerdict =
  | { status: 'trusted'; fingerprint: string }
  | { status: 'unknown'; fingerprint: string; keyType: string }
  | { status: 'changed'; fingerprint: string; keyType: string; expected: { keyType: string; fingerprint: string }[] }
  | { status: 'revoked'; fingerprint: string; keyType: string };

const SHA1_LEN = 20;

// ---------------------------------------------------------------------------------------
// Keys

/** `SHA256:<base64, no padding>`, as printed by `ssh-keygen -lf` and by ssh itself. */
export function fingerprintSha256(keyBlob: Buffer): string {
  return `SHA256:${createHash('sha256').update(keyBlob).digest('base64').replace(/=+$/, '')}`;
}

/**
 * The key type named by the SSH wire string at the start of a public key blob
 * (uint32 big-endian length, then that many ASCII bytes). Throws INVALID_REQUEST if the
 * blob is too short or the name is empty, too long or not printable ASCII.
 */
export function keyTypeOfBlob(blob: Buffer): string {
  if (blob.length < 4) throw new FerryException('INVALID_REQUEST', 'malformed public key: shorter than 4 bytes');
  const len = blob.readUInt32BE(0);
  if (len === 0 || len > 256 || 4 + len > blob.length) {
    throw new FerryException('INVALID_REQUEST', `malformed public key: bad key type length ${len}`);
  }
  const name = blob.subarray(4, 4 + len);
  for (const b of name) {
    if (b < 0x21 || b > 0x7e) throw new FerryException('INVALID_REQUEST', 'malformed public key: key type is not printable ASCII');
  }
  return name.toString('latin1');
}

/**
 * Key types that OpenSSH considers "the same type" for the changed-key warning: all ECDSA
 * curves are one type (so a nistp384 key where a nistp256 key is known counts as changed,
 * as in OpenSSH); likewise the security-key ECDSA variant.
 */
function keyFamily(type: string): string {
  const t = type.replace(/-cert-v01@openssh\.com$/, '');
  if (t.startsWith('ecdsa-sha2-')) return 'ecdsa';
  if (t.startsWith('sk-ecdsa-sha2-')) return 'sk-ecdsa';
  if (t === 'rsa-sha2-256' || t === 'rsa-sha2-512') return 'ssh-rsa';
  return t;
}

function strictBase64(s: string): Buffer | null {
  if (s.length === 0 || s.length % 4 !== 0 || !/^[A-Za-z0-9+/]+={0,2}$/.test(s)) return null;
  return Buffer.from(s, 'base64');
}

// ---------------------------------------------------------------------------------------
// Host names and patterns

/** The name known_hosts stores for a host: `host` on port 22, `[host]:port` otherwise. */
export function knownHostsName(host: string, port: number): string {
  const h = host.toLowerCase();
  return port === 22 ? h : `[${h}]:${port}`;
}

function hashName(salt: Buffer, name: string): Buffer {
  return createHmac('sha1', salt).update(name).digest();
}

/** Does `entry`'s host field match the lookup name (see {@link knownHostsName})? */
export function entryMatchesName(entry: KnownHostEntry, name: string): boolean {
  const lname = name.toLowerCase();
  if (entry.hashed) {
    const h = hashName(entry.hashed.salt, lname);
    return h.length === entry.hashed.hash.length && timingSafeEqual(h, entry.hashed.hash);
  }
  let matched = false;
  for (const raw of entry.patterns) {
    const negated = raw.startsWith('!');
    const pat = (negated ? raw.slice(1) : raw).toLowerCase();
    if (globMatch(lname, pat)) {
      if (negated) return false;
      matched = true;
    }
  }
  return matched;
}

// ---------------------------------------------------------------------------------------
// Parsing

function parseLine(text: string, line: number, source: string | undefined): KnownHostEntry | null {
  let rest = text.replace(/^[ \t]+/, '');
  if (rest === '' || rest.startsWith('#')) return null;
  const next = (): string | undefined => {
    const m = /^([^ \t]+)[ \t]*/.exec(rest);
    if (!m) return undefined;
    rest = rest.slice(m[0].length);
    return m[1];
  };
  let marker: KnownHostEntry['marker'];
  if (rest.startsWith('@')) {
    const tok = next();
    if (tok === '@revoked') marker = 'revoked';
    else if (tok === '@cert-authority') marker = 'cert-authority';
    else return null;
  }
  const hosts = next();
  const keyType = next();
  const keyB64 = next();
  if (hosts === undefined || keyType === undefined || keyB64 === undefined) return null;
  const keyBlob = strictBase64(keyB64);
  if (!keyBlob) return null;
  try {
    if (keyTypeOfBlob(keyBlob) !== keyType) return null;
  } catch {
    return null;
  }
  const entry: KnownHostEntry = { hosts, patterns: [], keyType, keyBlob, line };
  if (marker) entry.marker = marker;
  if (hosts.startsWith('|')) {
    const m = /^\|1\|([^|]+)\|([^|]+)$/.exec(hosts);
    if (!m) return null;
    const salt = strictBase64(m[1]!);
    const hash = strictBase64(m[2]!);
    if (!salt || !hash || salt.length !== SHA1_LEN || hash.length !== SHA1_LEN) return null;
    entry.hashed = { salt, hash };
  } else {
    entry.patterns = hosts.split(',').filter((p) => p !== '' && p !== '!');
    if (entry.patterns.length === 0) return null;
  }
  const comment = rest.trim();
  if (comment !== '') entry.comment = comment;
  if (source !== undefined) entry.source = source;
  return entry;
}

/**
 * Parse known_hosts text: `[@marker] hosts keytype base64key [comment]` per line.
 * Comments, blank lines and malformed lines (unknown marker, bad base64, a blob whose type
 * differs from the key type field, a bad hashed host field) are skipped, never thrown.
 */
export function parseKnownHosts(text: string, source?: string): KnownHostEntry[] {
  const out: KnownHostEntry[] = [];
  const lines = text.split('\n');
  for (let i = 0; i < lines.length; i++) {
    const e = parseLine(lines[i]!.replace(/\r$/, ''), i + 1, source);
    if (e) out.push(e);
  }
  return out;
}

// ---------------------------------------------------------------------------------------
// The check

function checkPort(port: number): void {
  if (!Number.isInteger(port) || port < 1 || port > 65535) {
    throw new FerryException('INVALID_REQUEST', `invalid port ${port}`);
  }
}

/**
 * Decide whether `keyBlob`, presented by `host:port`, is trusted. Pure. In order:
 * an applicable `@revoked` entry with this key -> `revoked`; an applicable plain entry with
 * exactly this key -> `trusted`; applicable plain entries with the same key type but other
 * keys -> `changed` (listing them); otherwise -> `unknown`. `@cert-authority` entries are
 * ignored. `host` is a name or an unbracketed IP address. Throws INVALID_REQUEST on a
 * malformed key blob or port.
 */
export function checkHostKey(entries: readonly KnownHostEntry[], host: string, port: number, keyBlob: Buffer): HostKeyVerdict {
  if (host === '') throw new FerryException('INVALID_REQUEST', 'empty host name');
  checkPort(port);
  const keyType = keyTypeOfBlob(keyBlob);
  const fingerprint = fingerprintSha256(keyBlob);
  const name = knownHostsName(host, port);
  const applicable = entries.filter((e) => e.marker !== 'cert-authority' && entryMatchesName(e, name));

  if (applicable.some((e) => e.marker === 'revoked' && e.keyBlob.equals(keyBlob))) {
    return { status: 'revoked', fingerprint, keyType };
  }
  const plain = applicable.filter((e) => e.marker === undefined);
  if (plain.some((e) => e.keyBlob.equals(keyBlob))) {
    return { status: 'trusted', fingerprint };
  }
  const family = keyFamily(keyType);
  const expected: { keyType: string; fingerprint: string }[] = [];
  for (const e of plain) {
    if (keyFamily(e.keyType) !== family) continue;
    const fp = fingerprintSha256(e.keyBlob);
    if (!expected.some((x) => x.fingerprint === fp)) expected.push({ keyType: e.keyType, fingerprint: fp });
  }
  if (expected.length > 0) return { status: 'changed', fingerprint, keyType, expected };
  return { status: 'unknown', fingerprint, keyType };
}

// ---------------------------------------------------------------------------------------
// Writing

/**
 * A known_hosts line for `host:port` (lower-cased; `[host]:port` unless port 22). With
 * `hashed` (or a `salt`, which must be 20 bytes) the host field is `|1|salt|hmac` like
 * `ssh-keygen -H`. Throws INVALID_REQUEST for a host that is not a plain name or address
 * (whitespace, commas, wildcards, brackets, leading `|`, `@`, `!` or `#`) or a bad key.
 */
export function formatKnownHostsLine(
  host: string,
  port: number,
  keyBlob: Buffer,
  opts?: { hashed?: boolean; salt?: Buffer },
): string {
  const hasControl = [...host].some((c) => c.charCodeAt(0) < 0x20 || c.charCodeAt(0) === 0x7f);
  if (host === '' || hasControl || /[\s,*?[\]]/.test(host) || /^[|@!#]/.test(host)) {
    throw new FerryException('INVALID_REQUEST', `invalid host name for known_hosts: ${JSON.stringify(host)}`);
  }
  checkPort(port);
  const keyType = keyTypeOfBlob(keyBlob);
  const name = knownHostsName(host, port);
  let field = name;
  if (opts?.hashed || opts?.salt) {
    const salt = opts.salt ?? randomBytes(SHA1_LEN);
    if (salt.length !== SHA1_LEN) {
      throw new FerryException('INVALID_REQUEST', `known_hosts salt must be ${SHA1_LEN} bytes, got ${salt.length}`);
    }
    field = `|1|${salt.toString('base64')}|${hashName(salt, name).toString('base64')}`;
  }
  return `${field} ${keyType} ${keyBlob.toString('base64')}`;
}

function ioError(what: string, path: string, e: unknown): FerryException {
  return new FerryException('IO_ERROR', `${what} ${path}: ${(e as Error).message}`, { path }, { cause: e });
}

/**
 * Append one line to a known_hosts file, creating the directory (0700) and the file (0600)
 * if needed. If the file does not end with a newline, one is written first. Existing
 * permissions are left alone.
 */
export async function appendKnownHost(path: string, line: string): Promise<void> {
  if (line.trim() === '' || /[\r\n\0]/.test(line)) {
    throw new FerryException('INVALID_REQUEST', 'a known_hosts line must be one non-empty line');
  }
  try {
    await mkdir(dirname(path), { recursive: true, mode: 0o700 });
  } catch (e) {
    throw ioError('cannot create the directory of', path, e);
  }
  let fh;
  try {
    fh = await open(path, 'a+', 0o600);
  } catch (e) {
    throw ioError('cannot open', path, e);
  }
  try {
    const { size } = await fh.stat();
    let prefix = '';
    if (size > 0) {
      const last = Buffer.alloc(1);
      await fh.read(last, 0, 1, size - 1);
      if (last[0] !== 0x0a) prefix = '\n';
    }
    await fh.write(`${prefix}${line}\n`);
  } catch (e) {
    throw ioError('cannot append to', path, e);
  } finally {
    await fh.close();
  }
}

/** Parse the given known_hosts files in order; missing files are skipped. IO_ERROR otherwise. */
export async function loadKnownHosts(paths: readonly string[]): Promise<KnownHostEntry[]> {
  const out: KnownHostEntry[] = [];
  for (const path of paths) {
    let text: string;
    try {
      text = await readFile(path, 'utf8');
    } catch (e) {
      const code = (e as NodeJS.ErrnoException).code;
      if (code === 'ENOENT' || code === 'ENOTDIR') continue;
      throw ioError('cannot read', path, e);
    }
    out.push(...parseKnownHosts(text, path));
  }
  return out;
}
