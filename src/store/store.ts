import type { ApplianceRecord, ImageRecord, Instance, User } from '../core/types.ts';
import type { RouteStore } from './route-store.ts';
import type { CertStore } from './cert-store.ts';
import type { AcmeStore } from '../gate/acme-store.ts';
import type { CiRunStore } from '../ci/ci-run.ts';
import type { ConfigVarStore } from './config-var-store.ts';
import type { LeaseStore } from './lease-store.ts';

export type InstancePatch = Partial<Pick<Instance, 'imageName' | 'state' | 'accessAt' | 'lastError' | 'upstream'>>;

/**
 * All durable state. Two back ends (SQLite, PostgreSQL) share one SQL
 * implementation over kysely and one conformance suite
 * (test/store/store.conformance.ts).
 */
export interface Store extends RouteStore, CertStore, CiRunStore, ConfigVarStore, AcmeStore, LeaseStore {
  readonly backend: 'sqlite' | 'postgres';
  migrate(): Promise<void>;
  close(): Promise<void>;

  createUser(user: User): Promise<void>;
  getUser(id: string): Promise<User | null>;
  getUserByName(name: string): Promise<User | null>;
  listUsers(): Promise<User[]>;

  /** Inserts the image row unless the digest is known already. */
  putImage(image: ImageRecord): Promise<void>;
  getImage(digest: string): Promise<ImageRecord | null>;
  listImages(): Promise<ImageRecord[]>;
  deleteImage(digest: string): Promise<void>;
  /** Number of instances that reference the digest. */
  imageRefs(digest: string): Promise<number>;

  insertInstance(instance: Instance): Promise<void>;
  getInstance(hostname: string): Promise<Instance | null>;
  /** The instance whose hostname or alias is `host`. */
  findInstance(host: string): Promise<Instance | null>;
  listInstances(userId?: string): Promise<Instance[]>;
  updateInstance(hostname: string, patch: InstancePatch): Promise<void>;
  /**
   * Sets an alias in one transaction: any other instance of the same user
   * holding it loses it (answered in `movedFrom`). The caller checks
   * ownership by other users first.
   */
  setAlias(hostname: string, alias: string | null): Promise<{ movedFrom: string | null }>;
  /** Deletes the instance; answers true when no instance references its image any more. */
  deleteInstance(hostname: string): Promise<{ imageOrphaned: boolean }>;

  putAppliance(appliance: ApplianceRecord): Promise<void>;
  getAppliance(userId: string, name: string): Promise<ApplianceRecord | null>;
  listAppliances(userId?: string): Promise<ApplianceRecord[]>;
  deleteAppliance(userId: string, name: string): Promise<void>;
}
