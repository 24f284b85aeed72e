/** One problem with an input: the field (dotted path) and why it was refused. */
export interface FieldIssue {
  field: string;
  reason: string;
}
