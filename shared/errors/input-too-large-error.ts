import { Cell0Error } from './cell0-error.js';
import { ErrorCode } from './error-codes.js';

/** An input is larger than the configured limit; it never reaches Redis. */
export class InputTooLargeError extends Cell0Error {
  constructor(
    readonly field: string,
    readonly limitBytes: number,
    readonly actualBytes: number,
  ) {
    super(
      ErrorCode.INPUT_TOO_LARGE,
      `${field}: ${actualBytes} bytes is over the limit of ${limitBytes} bytes`,
    );
  }
}
