import { UnrecoverableError } from 'bullmq';
import { type z } from 'zod';
import { ValidationError } from '../../shared/errors.js';
import { encodeFailure } from '../../shared/queues/failure.js';
import { toFieldIssues } from '../../shared/queues/schemas.js';

/**
 * Job data that failed the fast shape check (written by something other than cell0's producers, e.g.
 * without defaults): the full schema either fills it in or says which field is wrong, failing the job
 * without retries.
 */
export function parseJobData<S extends z.ZodType>(schema: S, data: unknown): z.output<S> {
  const r = schema.safeParse(data);
  if (!r.success) throw new UnrecoverableError(encodeFailure(new ValidationError(toFieldIssues(r.error))));
  return r.data;
}
