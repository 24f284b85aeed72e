import { type ErrorCode } from './error-codes.js';

/** Base class of every error cell0 raises on purpose. */
export class Cell0Error extends Error {
  readonly code: ErrorCode;
  constructor(code: ErrorCode, message: string, options?: { cause?: unknown }) {
    super(message, options);
    this.name = new.target.name;
    this.code = code;
  }
}

/** True when `err` is a cell0 error with the given code. */
export function hasCode(err: unknown, code: ErrorCode): boolean {
  return err instanceof Cell0Error && err.code === code;
}
