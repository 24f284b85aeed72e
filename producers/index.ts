export {
  Cell0Client,
  type Cell0ClientOptions,
  type CallOptions,
  type JobHandle,
  type JobResult,
} from './cell0-client.js';
export { JobSubmitter, type JobSubmitterOptions, type SubmitResult, type JobView } from './job-submitter.js';
export * from '../shared/queues/index.js';
export * from '../shared/errors.js';
