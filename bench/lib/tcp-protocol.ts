/*
 * The raw TCP transfer of the reference peer: the least a Node.js program
 * can do to move bytes over loopback. One request per connection, after a
 * 9-byte header of an operation byte and a big-endian 64-bit length:
 *
 *   U  the client sends `length` bytes; the peer counts them and replies
 *      with the count (8 bytes) and 32 zero bytes.
 *   H  as U, but the peer also hashes the bytes and replies with the
 *      count and their SHA-256.
 *   W  as U, but the peer writes the bytes to a file in its directory,
 *      flushes it to disk (fsync) before it replies, and deletes it.
 *   D  the client sends a file path of `length` bytes; the peer streams
 *      that file with 1 MiB reads and closes the connection.
 */
export const TCP_HEADER_BYTES = 9;
export const TCP_REPLY_BYTES = 40;

export const TcpOperation = {
  upload: 0x55, // "U"
  uploadHashed: 0x48, // "H"
  uploadToDisk: 0x57, // "W"
  download: 0x44, // "D"
} as const;

export function tcpHeader(operation: number, length: number): Buffer {
  const header = Buffer.alloc(TCP_HEADER_BYTES);
  header.writeUInt8(operation, 0);
  header.writeBigUInt64BE(BigInt(length), 1);
  return header;
}
