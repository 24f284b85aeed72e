import { Cell0Error } from './cell0-error.js';
import { ErrorCode } from './error-codes.js';

/** The object was closed; it takes no more calls. */
export class ClosedError extends Cell0Error {
  constructor(what: string) {
    super(ErrorCode.CLOSED, `${what} is closed`);
  }
}
