import { Cell0Error } from './cell0-error.js';
import { ErrorCode } from './error-codes.js';

/** The backend does not know the requested model. Not retryable. */
export class ModelNotFoundError extends Cell0Error {
  constructor(
    readonly provider: string,
    readonly model: string,
  ) {
    super(ErrorCode.MODEL_NOT_FOUND, `${provider}: model "${model}" not found`);
  }
}
