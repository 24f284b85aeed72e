import { Cell0Error, ERROR_CODE_PREFIX, isErrorCode } from '../errors.js';

/*
 * BullMQ keeps only an error's message as the job's failedReason. The worker prefixes the message with the
 * error's code ("[CELL0_MODEL_NOT_FOUND] ...") so that producers, in any process, can branch on the code.
 */

const FAILURE = new RegExp(`^\\[(${ERROR_CODE_PREFIX}[A-Z_]+)\\] ([\\s\\S]*)$`);

/** The failedReason text for an error thrown by a job. */
export function encodeFailure(err: unknown): string {
  if (err instanceof Cell0Error) return `[${err.code}] ${err.message}`;
  if (err instanceof Error) return err.message || err.name;
  return String(err);
}

/** The code and message inside a failedReason; code is undefined for errors cell0 did not raise. */
export function decodeFailure(reason: string | undefined | null): {
  code: string | undefined;
  message: string;
} {
  const text = reason ?? 'unknown failure';
  const m = FAILURE.exec(text);
  if (m && isErrorCode(m[1])) return { code: m[1], message: m[2]! };
  return { code: undefined, message: text };
}
