/**
 * Remembered SSH key passphrases. Never plain text on disk: each secret is encrypted by a
 * cipher the desktop shell provides (Electron's safeStorage: the OS keychain / libsecret /
 * DPAPI) before it reaches `secrets.json` (mode 0600). Where there is no such cipher (the
 * browser mode, the CLI) remembering is refused and passphrases stay in memory only.
 */
import { readFileSync } from 'node:fs';
import { FerryException } from '../../shared/errors';
import { writeFileAtomic } from './transport/local-transport';

export interface SecretCipher {
  /** False when the OS offers no encryption (e.g. Linux without a keyring). */
  available(): boolean;
  encrypt(plain: string): Buffer;
  decrypt(data: Buffer): string;
}

interface SecretsFile {
  version: 1;
  /** hostId -> base64 of the cipher's output. */
  secrets: Record<string, string>;
}

export const NO_CIPHER_REASON = 'remembering a passphrase needs the desktop app (its OS keychain encrypts it); here it is kept in memory only';

export class SecretStore {
  constructor(private readonly file: string, private readonly cipher?: SecretCipher) {}

  /** Whether a passphrase can be remembered, and if not, why. */
  status(): { available: boolean; reason?: string } {
    if (!this.cipher) return { available: false, reason: NO_CIPHER_REASON };
    if (!this.cipher.available()) return { available: false, reason: 'the OS offers no encryption for stored secrets (no keyring): passphrases are kept in memory only' };
    return { available: true };
  }

  private read(): SecretsFile {
    let text: string;
    try {
      text = readFileSync(this.file, 'utf8');
    } catch (e) {
      if ((e as NodeJS.ErrnoException).code === 'ENOENT') return { version: 1, secrets: {} };
      throw new FerryException('IO_ERROR', `cannot read ${this.file}: ${(e as Error).message}`);
    }
    try {
      const f = JSON.parse(text) as SecretsFile;
      if (f?.version !== 1 || typeof f.secrets !== 'object' || f.secrets === null) throw new Error('not a secrets file');
      return f;
    } catch (e) {
      throw new FerryException('CONFIG_CORRUPT', `${this.file} is corrupt (${(e as Error).message}); remove it to forget the remembered passphrases`, { path: this.file });
    }
  }

  /** The remembered passphrase of a host; undefined when none (or it cannot be decrypted here). */
  get(hostId: string): string | undefined {
    if (!this.cipher?.available()) return undefined;
    let f: SecretsFile;
    try {
      f = this.read();
    } catch {
      return undefined;
    }
    const b64 = f.secrets[hostId];
    if (b64 === undefined) return undefined;
    try {
      return this.cipher.decrypt(Buffer.from(b64, 'base64'));
    } catch {
      return undefined; // encrypted by another user or machine: ask again
    }
  }

  async set(hostId: string, plain: string): Promise<void> {
    const st = this.status();
    if (!st.available) throw new FerryException('UNSUPPORTED', `cannot remember the passphrase: ${st.reason ?? 'no cipher'}`);
    const f = this.read();
    f.secrets[hostId] = this.cipher!.encrypt(plain).toString('base64');
    await writeFileAtomic(this.file, `${JSON.stringify(f, null, 2)}\n`, 0o600);
  }

  async forget(hostId: string): Promise<boolean> {
    let f: SecretsFile;
    try {
      f = this.read();
    } catch {
      return false;
    }
    if (!(hostId in f.secrets)) return false;
    delete f.secrets[hostId];
    await writeFileAtomic(this.file, `${JSON.stringify(f, null, 2)}\n`, 0o600);
    return true;
  }
}
