import { Cell0Error } from './cell0-error.js';
import { ErrorCode } from './error-codes.js';

/** A model does not fit the model-memory budget even with every other model evicted. Not retryable. */
export class ModelTooLargeError extends Cell0Error {
  constructor(
    readonly model: string,
    readonly memoryBytes: number,
    readonly budgetBytes: number,
  ) {
    super(
      ErrorCode.MODEL_TOO_LARGE,
      `model "${model}" needs ${memoryBytes} bytes, more than the model-memory budget of ${budgetBytes} bytes (CELL0_MODEL_MEMORY_BUDGET)`,
    );
  }
}
