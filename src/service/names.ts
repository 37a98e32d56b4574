import { invalidArgument } from "./errors.js";

/** Maximum length of an object key in UTF-8 bytes, as in S3. */
export const MAX_KEY_BYTES = 1024;

/**
 * Checks an object key: 1 to 1024 bytes of UTF-8, no control characters,
 * no leading or trailing "/", no empty, "." or ".." segments. These rules
 * keep every key valid as an S3 object name and as a URL path.
 */
export function validateKey(key: string): void {
  if (key.length === 0) {
    throw invalidArgument("object key is empty: give a key of 1 to 1024 bytes");
  }
  if (!key.isWellFormed()) {
    throw invalidArgument(`object key ${JSON.stringify(key)} is not valid UTF-8`);
  }
  const bytes = Buffer.byteLength(key, "utf8");
  if (bytes > MAX_KEY_BYTES) {
    throw invalidArgument(`object key is ${bytes} bytes long: the maximum is ${MAX_KEY_BYTES} bytes`);
  }
  // C0 controls, DEL and C1 controls, NUL included.
  if (/[\u0000-\u001f\u007f-\u009f]/.test(key)) {
    throw invalidArgument(`object key ${JSON.stringify(key)} contains a control character: remove it`);
  }
  if (key.startsWith("/") || key.endsWith("/")) {
    throw invalidArgument(`object key ${JSON.stringify(key)} starts or ends with "/": remove the slash`);
  }
  for (const segment of key.split("/")) {
    if (segment === "") {
      throw invalidArgument(`object key ${JSON.stringify(key)} contains "//": use a single slash`);
    }
    if (segment === "." || segment === "..") {
      throw invalidArgument(`object key ${JSON.stringify(key)} contains a "${segment}" segment: use a plain path`);
    }
  }
}

/**
 * Checks a bucket name against the S3 rules: 3 to 63 characters of lower
 * case letters, digits, "." and "-", starting and ending with a letter or
 * digit.
 */
export function validateBucketName(name: string): void {
  if (name === "") {
    throw invalidArgument("bucket name is empty: give a bucket such as mnemos-models");
  }
  if (!/^[a-z0-9][a-z0-9.-]{1,61}[a-z0-9]$/.test(name) || name.includes("..")) {
    throw invalidArgument(
      `bucket name ${JSON.stringify(name)} is invalid: use 3 to 63 lower case letters, digits, "." or "-", starting and ending with a letter or digit`,
    );
  }
}

/** Checks a generation to read or delete: 0 names the live version. */
export function validateGeneration(generation: number): void {
  if (!Number.isSafeInteger(generation) || generation < 0) {
    throw invalidArgument(`generation ${generation} is invalid: give 0 for the live version or a positive generation`);
  }
}
