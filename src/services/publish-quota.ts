import { EphError } from '../core/errors.ts';
import type { Plan, User } from '../core/types.ts';
import type { Store } from '../store/store.ts';
import { KeyedLock } from '../core/keyed-lock.ts';

/** The longest imageName (the compat API's limit, also applied to PUT imageName). */
export const MAX_IMAGE_NAME = 200;

/** The imageName of a publish (X-Name, ?name=, or the multipart file name); 'archive' when none. */
export function publishedImageName(raw: string | undefined): string {
  const name = raw?.trim() ?? '';
  if (name.length > MAX_IMAGE_NAME) {
    throw new EphError('INVALID_VALUE', `imageName must be at most ${MAX_IMAGE_NAME} characters, got ${name.length}`);
  }
  return name === '' ? 'archive' : name;
}

/** What a publish of `plan` may still store. */
export interface Allowance {
  /** Archive bytes the user may still add (Infinity when not limited). */
  bytesLeft: number;
  /** The error to answer when an upload passes `bytesLeft`. */
  overBytes: () => EphError;
}

/**
 * The per-user limits of a plan at publish time: how many instances a user
 * may have (409 INSTANCE_QUOTA_EXCEEDED) and how many archive bytes their
 * instances may keep stored (413 STORAGE_QUOTA_EXCEEDED; the sum of the
 * archive size of every instance, so that what a publish adds is known
 * while it is read, whoever else stores the same archive). Checked before the upload is
 * read, bounded while it is read, and once more, serialised per user, just
 * before the instance is recorded, so that parallel publishes cannot
 * together pass a limit.
 */
export class PublishQuota {
  readonly #store: Store;
  readonly #locks = new KeyedLock();

  constructor(store: Store) {
    this.#store = store;
  }

  /** Refuses a publish that cannot fit whatever it uploads; answers what it may add. */
  async before(user: User, plan: Plan): Promise<Allowance> {
    const q = plan.quotas ?? {};
    const usage = await this.#usage(user.id);
    this.#checkCount(plan, usage.instances);
    const max = q.maxStoredBytes;
    if (max === undefined) return { bytesLeft: Infinity, overBytes: () => new EphError('INTERNAL', 'no storage limit') };
    const overBytes = (): EphError => storageError(plan, max, usage.bytes);
    if (!fits(max, usage.bytes, 1)) throw overBytes();
    return { bytesLeft: max - usage.bytes, overBytes };
  }

  /**
   * Checks the limits with the stored image (`digest`, `size` archive bytes)
   * counted, then runs `record` under the user's lock. On refusal `discard`
   * runs (to remove an image nobody else uses) and the error is thrown.
   */
  async commit<T>(user: User, plan: Plan, image: { digest: string; size: number }, record: () => Promise<T>, discard: () => Promise<void>): Promise<T> {
    return this.#locks.run(user.id, async () => {
      try {
        const usage = await this.#usage(user.id);
        this.#checkCount(plan, usage.instances);
        const max = plan.quotas?.maxStoredBytes;
        if (max !== undefined && !fits(max, usage.bytes, image.size)) throw storageError(plan, max, usage.bytes);
      } catch (e) {
        await discard();
        throw e;
      }
      return record();
    });
  }

  #checkCount(plan: Plan, instances: number): void {
    const max = plan.quotas?.maxInstances;
    if (max !== undefined && instances >= max) {
      throw new EphError('INSTANCE_QUOTA_EXCEEDED', `plan '${plan.name}' allows ${max} instance${max === 1 ? '' : 's'} per user; delete one first`);
    }
  }

  async #usage(userId: string): Promise<{ instances: number; bytes: number }> {
    const mine = await this.#store.listInstances(userId);
    const sizes = new Map<string, number>();
    let bytes = 0;
    for (const i of mine) {
      let size = sizes.get(i.imageDigest);
      if (size === undefined) sizes.set(i.imageDigest, (size = (await this.#store.getImage(i.imageDigest))?.size ?? 0));
      bytes += size;
    }
    return { instances: mine.length, bytes };
  }

}

/** Whether `adds` more bytes keep a user with `used` bytes within `max`. */
function fits(max: number, used: number, adds: number): boolean {
  return used + adds <= max;
}

function storageError(plan: Plan, max: number, used: number): EphError {
  return new EphError(
    'STORAGE_QUOTA_EXCEEDED',
    `plan '${plan.name}' allows ${max} bytes of stored archives per user (${used} in use); delete an instance first`,
  );
}
