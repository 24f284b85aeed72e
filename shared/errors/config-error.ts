import { Cell0Error } from './cell0-error.js';
import { ErrorCode } from './error-codes.js';
import { type FieldIssue } from './field-issue.js';

/** The environment (or options object) holds a value cell0 cannot run with. */
export class ConfigError extends Cell0Error {
  readonly issues: FieldIssue[];
  constructor(issues: FieldIssue[]) {
    super(
      ErrorCode.CONFIG_INVALID,
      'invalid configuration:\n' + issues.map((i) => `  ${i.field}: ${i.reason}`).join('\n'),
    );
    this.issues = issues;
  }
}
