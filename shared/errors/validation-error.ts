import { Cell0Error } from './cell0-error.js';
import { ErrorCode } from './error-codes.js';
import { type FieldIssue } from './field-issue.js';

/** A request did not match its schema. */
export class ValidationError extends Cell0Error {
  readonly issues: FieldIssue[];
  constructor(issues: FieldIssue[]) {
    super(ErrorCode.VALIDATION, issues.map((i) => `${i.field}: ${i.reason}`).join('; '));
    this.issues = issues;
  }
}
