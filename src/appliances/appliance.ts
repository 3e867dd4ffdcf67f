import type { Readable } from 'node:stream';
import type { ApplianceKind, ApplianceRecord } from '../core/types.ts';

/**
 * One kind of managed service (PostgreSQL, Redis, static files, MongoDB).
 * A driver only creates, starts, stops, backs up and restores the service in
 * the directory it is given; the ApplianceService decides when, allocates
 * ports, records state and runs the TLS-PSK endpoint in front of it.
 *
 * Every driver binds its service to 127.0.0.1:`rec.port` only.
 */
export interface ApplianceDriver {
  readonly kind: ApplianceKind;
  /** The port a client tunnel opens on the user's machine (5432 for PostgreSQL). */
  readonly defaultLocalPort: number;
  /**
   * Sets the service up in the empty directory `dir` and answers its
   * settings (role, password, database…), stored in the record. May leave
   * the service running; {@link start} is idempotent.
   * @throws EphError DEPENDENCY_MISSING when a program it needs is absent.
   */
  create(rec: ApplianceRecord, dir: string): Promise<Record<string, string>>;
  /** Starts the service on `rec.port`; resolves once it accepts connections. No-op when running. */
  start(rec: ApplianceRecord, dir: string): Promise<void>;
  /** Stops the service cleanly. No-op when stopped. */
  stop(rec: ApplianceRecord, dir: string): Promise<void>;
  /** The appliance's data as one stream (SQL dump, RDB file, tar). */
  backup(rec: ApplianceRecord, dir: string): Readable;
  /** Replaces the data with a stream {@link backup} produced. */
  restore(rec: ApplianceRecord, dir: string, input: Readable): Promise<void>;
  /**
   * The client URL as seen through a tunnel on `localPort`, e.g.
   * `postgres://user:password@127.0.0.1:5432/db`.
   */
  url(rec: ApplianceRecord, localPort: number): string;
  /** The media type and file name extension of {@link backup}'s stream. */
  readonly backupFormat: { contentType: string; extension: string };
}
