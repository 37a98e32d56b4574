/** Limits that the services enforce and the capabilities RPC publishes. */
export interface Limits {
  /** Largest data chunk one Upload message may carry. */
  readonly maxUploadChunkBytes: number;
  /** Size of the chunks Download sends. */
  readonly downloadChunkBytes: number;
  /** Largest serialized message the server reads or writes. */
  readonly maxMessageBytes: number;
  readonly maxObjectBytes: number;
  readonly maxListPageSize: number;
  readonly maxKeyBytes: number;
  /** Largest total size of user metadata keys and values, in UTF-8 bytes. */
  readonly maxMetadataBytes: number;
  readonly maxTags: number;
}
