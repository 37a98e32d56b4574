/** Limits that the services enforce and the capabilities RPC publishes. */
export interface Limits {
  /** Largest data chunk one Upload message may carry. */
  readonly maxUploadChunkBytes: number;
  /** Size of the chunks Download sends when few downloads run at once. */
  readonly downloadChunkBytes: number;
  /**
   * Bytes of download chunks that all open downloads together may hold:
   * with many downloads at once, each sends smaller chunks, down to
   * MIN_DOWNLOAD_CHUNK_BYTES, so the server's memory does not grow with the
   * number of readers.
   */
  readonly downloadBudgetBytes: number;
  /** Largest serialized message the server reads or writes. */
  readonly maxMessageBytes: number;
  readonly maxObjectBytes: number;
  readonly maxListPageSize: number;
  readonly maxKeyBytes: number;
  /** Largest total size of user metadata keys and values, in UTF-8 bytes. */
  readonly maxMetadataBytes: number;
  readonly maxTags: number;
}
