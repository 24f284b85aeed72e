/*
 * What counts as text in a request: well-formed Unicode, and which characters are control characters.
 * Shared by the request schemas and the caches, so both draw the lines in the same place.
 */

/**
 * True when `s` is well-formed UTF-16: no lone surrogate (an unpaired half of a surrogate pair, \uD800-
 * \uDFFF). A lone surrogate is not a character: UTF-8 (Redis, hashes, backends) can only carry it as
 * U+FFFD, so two different strings would become one. Typed loosely: String#isWellFormed is ES2024.
 */
export function isWellFormedText(s: string): boolean {
  return (s as unknown as { isWellFormed(): boolean }).isWellFormed();
}

/**
 * Control characters other than white space: C0 except tab, line feed, vertical tab, form feed and
 * carriage return; DEL; C1 (U+0080-U+009F, NEL included).
 */
// eslint-disable-next-line no-control-regex -- the point is to find control characters
const CONTROL_CHAR = /[\u0000-\u0008\u000e-\u001f\u007f-\u009f]/;

/** True when `s` holds a control character other than white space (see CONTROL_CHAR). */
export function hasControlChar(s: string): boolean {
  return CONTROL_CHAR.test(s);
}
