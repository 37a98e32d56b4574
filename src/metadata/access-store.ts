/** A grant as stored: actions on a bucket ("*" for all), optionally under a key prefix. */
export interface GrantRecord {
  readonly bucket: string;
  readonly prefix: string;
  readonly actions: readonly string[];
}

/** A stored access key; the token itself is never stored, only its SHA-256. */
export interface AccessKeyRecord {
  readonly keyId: string;
  readonly principal: string;
  readonly description: string;
  readonly grants: readonly GrantRecord[];
  /** Hex SHA-256 of the token. */
  readonly tokenSha256: string;
  readonly createdAt: Date;
  readonly revokedAt: Date | undefined;
}

export type NewAccessKey = Omit<AccessKeyRecord, "createdAt" | "revokedAt">;

/** One recorded call, for the audit log. */
export interface AuditEvent {
  readonly principal: string;
  readonly action: string;
  readonly bucket: string;
  readonly key: string;
  /** gRPC code name, such as OK or PERMISSION_DENIED. */
  readonly result: string;
  /** RPC name or HTTP operation. */
  readonly operation: string;
}

export interface AuditRecord extends AuditEvent {
  readonly id: number;
  readonly time: Date;
}

export interface AuditQuery {
  readonly principal?: string;
  readonly bucket?: string;
  /** Only events with a smaller id, for paging; undefined starts at the newest. */
  readonly beforeId?: number;
  readonly limit: number;
}

/** Access keys and the audit log, in the metadata database. */
export interface AccessStore {
  createAccessKey(key: NewAccessKey): Promise<AccessKeyRecord>;
  getAccessKey(keyId: string): Promise<AccessKeyRecord | undefined>;
  /** Every key, revoked ones included, oldest first. */
  listAccessKeys(): Promise<AccessKeyRecord[]>;
  /** Sets the revocation time once; returns undefined when the key does not exist. */
  revokeAccessKey(keyId: string): Promise<AccessKeyRecord | undefined>;
  /** Counts keys ever created, revoked ones included. */
  countAccessKeys(): Promise<number>;
  appendAudit(event: AuditEvent): Promise<void>;
  /** Events newest first. */
  listAudit(query: AuditQuery): Promise<AuditRecord[]>;
}
