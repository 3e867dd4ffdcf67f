/**
 * A config var of an instance as stored: the value sealed by the secret box
 * (src/services/secret-box.ts), never in clear text.
 */
export interface ConfigVarRecord {
  hostname: string;
  name: string;
  /** The value sealed with the cloud's key (AES-256-GCM), bound to hostname and name. */
  sealed: string;
  /** Shown redacted unless revealed. */
  secret: boolean;
  /** Bytes of name + clear value, for the plan's limits without opening the value. */
  size: number;
  updatedAt: number;
}

/** An appliance attached to an instance: a tunnel inside the instance and the config var naming it. */
export interface AttachmentRecord {
  hostname: string;
  /** Owner of both the instance and the appliance. */
  userId: string;
  appliance: string;
  /** The config var holding the local URL. */
  varName: string;
  /** PSK identity of this attachment at the appliance's endpoint. */
  identity: string;
  /** Its key, sealed like a config var. */
  sealedKey: string;
  /** Port the tunnel accepts on inside the instance. */
  localPort: number;
  createdAt: number;
}

/** Config vars and attachments; part of Store (both back ends, one conformance suite). */
export interface ConfigVarStore {
  listConfigVars(hostname: string): Promise<ConfigVarRecord[]>;
  /** Writes `set` (insert or replace) and deletes `unset` in one transaction. */
  changeConfigVars(hostname: string, set: readonly ConfigVarRecord[], unset: readonly string[]): Promise<void>;
  /** Every attachment, or those of one instance. */
  listAttachments(hostname?: string): Promise<AttachmentRecord[]>;
  /** Records the attachment and its config var in one transaction. */
  putAttachment(a: AttachmentRecord, configVar: ConfigVarRecord): Promise<void>;
  /** Deletes the attachment and its config var in one transaction. */
  deleteAttachment(hostname: string, appliance: string): Promise<void>;
}
