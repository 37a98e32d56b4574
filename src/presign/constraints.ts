/** Constraints a presigned URL may carry, each covered by its signature. */
export const CONSTRAINT = {
  responseContentDisposition: "response-content-disposition",
  responseContentType: "response-content-type",
  contentType: "x-engram-content-type",
  size: "x-engram-size",
  sha256: "x-engram-sha256",
  ifGenerationMatch: "x-engram-if-generation-match",
  /** Id of the principal that created the URL, whose grants are checked again at each use. */
  principal: "x-engram-principal",
} as const;

/**
 * Builds a Content-Disposition value for a download file name: a plain
 * ASCII fallback, and the exact name in RFC 5987 form for clients that
 * read it.
 */
export function contentDispositionOf(fileName: string): string {
  const fallback = fileName.replace(/[^\x20-\x7e]|["\\%]/g, "_");
  const encoded = encodeURIComponent(fileName).replace(/['()*]/g, (char) => `%${char.charCodeAt(0).toString(16).toUpperCase()}`);
  return `attachment; filename="${fallback}"; filename*=UTF-8''${encoded}`;
}
