import { createCipheriv, createDecipheriv, randomBytes } from 'node:crypto';
import { open, readFile, stat } from 'node:fs/promises';
import { EphError } from '../core/errors.ts';

const KEY_BYTES = 32;
const IV_BYTES = 12;
const TAG_BYTES = 16;
/** Format tag of sealed values: a later key or cipher gets another one. */
const VERSION = 'v1';

/**
 * Seals config var values with AES-256-GCM under a key kept outside the
 * store (a file of the cloud's, 0600). Each value is bound to its context
 * (instance and name) as additional authenticated data, so a sealed value
 * copied to another row or another tenant's instance does not open.
 *
 * @example
 * const box = await SecretBox.load(join(dataDir, 'secrets.key'));
 * const sealed = box.seal('s3cret', 'eph-1a2b3c4d.eph.localhost\0API_KEY');
 * box.open(sealed, 'eph-1a2b3c4d.eph.localhost\0API_KEY'); // 's3cret'
 */
export class SecretBox {
  readonly #key: Buffer;

  constructor(key: Buffer) {
    if (key.length !== KEY_BYTES) throw new EphError('INVALID_CONFIG', `secrets key: expected ${KEY_BYTES} bytes, got ${key.length}`);
    this.#key = key;
  }

  /**
   * Reads the key file (64 hex digits), creating it with a fresh random key
   * (mode 0600, never overwritten) when it does not exist. A file that
   * others may read, or that is malformed, is refused: every sealed value
   * depends on it.
   * @throws EphError INVALID_CONFIG naming the file and what to do.
   */
  static async load(file: string): Promise<SecretBox> {
    try {
      // 'wx': a second server starting at the same moment, or a replica's copy, is never replaced.
      const fh = await open(file, 'wx', 0o600);
      try {
        await fh.writeFile(`${randomBytes(KEY_BYTES).toString('hex')}\n`);
        await fh.sync();
      } finally {
        await fh.close();
      }
    } catch (e) {
      if ((e as NodeJS.ErrnoException).code !== 'EEXIST') {
        throw new EphError('INVALID_CONFIG', `secrets key ${file}: cannot create it: ${(e as Error).message}`, { cause: e });
      }
    }
    const st = await stat(file);
    if ((st.mode & 0o077) !== 0) {
      throw new EphError('INVALID_CONFIG', `secrets key ${file}: readable by others (mode ${(st.mode & 0o777).toString(8)}); run chmod 600 ${file}`);
    }
    const text = (await readFile(file, 'utf8')).trim();
    if (!/^[0-9a-f]{64}$/i.test(text)) {
      throw new EphError('INVALID_CONFIG', `secrets key ${file}: expected ${KEY_BYTES * 2} hexadecimal digits (e.g. from \`openssl rand -hex 32\`)`);
    }
    return new SecretBox(Buffer.from(text, 'hex'));
  }

  /** `v1:` + base64(iv | tag | ciphertext). */
  seal(plain: string, context: string): string {
    const iv = randomBytes(IV_BYTES);
    const c = createCipheriv('aes-256-gcm', this.#key, iv);
    c.setAAD(Buffer.from(context, 'utf8'));
    const body = Buffer.concat([c.update(plain, 'utf8'), c.final()]);
    return `${VERSION}:${Buffer.concat([iv, c.getAuthTag(), body]).toString('base64')}`;
  }

  /**
   * The clear text of a sealed value.
   * @throws EphError INTERNAL when it does not open (another key, another context, tampered).
   */
  open(sealed: string, context: string): string {
    const [version, data] = sealed.split(':', 2);
    const raw = version === VERSION && data ? Buffer.from(data, 'base64') : Buffer.alloc(0);
    if (raw.length < IV_BYTES + TAG_BYTES) throw new EphError('INTERNAL', 'a sealed value is malformed');
    try {
      const d = createDecipheriv('aes-256-gcm', this.#key, raw.subarray(0, IV_BYTES));
      d.setAAD(Buffer.from(context, 'utf8'));
      d.setAuthTag(raw.subarray(IV_BYTES, IV_BYTES + TAG_BYTES));
      return Buffer.concat([d.update(raw.subarray(IV_BYTES + TAG_BYTES)), d.final()]).toString('utf8');
    } catch (e) {
      throw new EphError('INTERNAL', 'a sealed value does not open with this cloud\'s secrets key (EPH_SECRETS_KEY_FILE differs from the one that sealed it?)', { cause: e });
    }
  }
}
