import { InputTooLargeError, ValidationError, type FieldIssue } from '../../shared/errors.js';
import { isQueueName, QUEUE_NAMES, type QueueName } from '../../shared/queues/names.js';

/** One request of a batch as a caller writes it (a JSONL line, or an element of a JSON array). */
export interface BatchRequest {
  /** The caller's name for the request; echoed in its result line. Need not be unique. */
  custom_id: string;
  queue: QueueName;
  /** The request, exactly as POST /v1/<queue> takes it (without `wait`). */
  body: unknown;
}

/** A validated request: its line number (1-based) and its canonical job data. */
export interface BatchItem {
  line: number;
  custom_id: string;
  queue: QueueName;
  data: unknown;
}

/** Validates and canonicalises the body of one queue's request (throws ValidationError/InputTooLargeError). */
export type BodyParser = (queue: QueueName, body: unknown) => unknown;

/** How many bad lines a 400 lists one by one; the rest are counted. */
export const MAX_LISTED_ISSUES = 100;

const MAX_CUSTOM_ID = 512;

/**
 * Splits a batch body into its requests: a JSON array (element i is line i + 1) or JSON Lines (one request
 * per line; blank lines are skipped but counted, so line numbers are the file's). A line that is not JSON
 * is an issue of its own line; the whole body is refused only when it is neither shape.
 */
export function splitBatchBody(
  text: string,
  format: 'json' | 'jsonl',
): { line: number; value?: unknown; error?: string }[] {
  if (format === 'json') {
    let parsed: unknown;
    try {
      parsed = JSON.parse(text);
    } catch (err) {
      throw new ValidationError([{ field: '(body)', reason: `malformed JSON: ${(err as Error).message}` }]);
    }
    if (!Array.isArray(parsed))
      throw new ValidationError([
        {
          field: '(body)',
          reason: 'expected a JSON array of requests (or send JSON Lines as application/jsonl)',
        },
      ]);
    return parsed.map((value: unknown, i) => ({ line: i + 1, value }));
  }
  const out: { line: number; value?: unknown; error?: string }[] = [];
  const lines = text.split('\n');
  for (let i = 0; i < lines.length; i++) {
    const raw = lines[i]!.endsWith('\r') ? lines[i]!.slice(0, -1) : lines[i]!;
    if (raw.trim() === '') continue;
    try {
      out.push({ line: i + 1, value: JSON.parse(raw) as unknown });
    } catch (err) {
      out.push({ line: i + 1, error: `not JSON: ${(err as Error).message}` });
    }
  }
  return out;
}

/**
 * Validates every request of a batch before anything is enqueued. Returns the items, or throws one
 * ValidationError whose issues name each bad line (`lines[7].body.prompt`), at most MAX_LISTED_ISSUES of
 * them and then a count of the rest. `maxItems` over → InputTooLargeError (field `(body)`, in items).
 */
export function parseBatch(
  entries: { line: number; value?: unknown; error?: string }[],
  opts: { parse: BodyParser; maxItems: number; queues?: readonly QueueName[] },
): BatchItem[] {
  if (entries.length > opts.maxItems) throw new BatchTooLargeError(opts.maxItems, entries.length);
  if (entries.length === 0)
    throw new ValidationError([{ field: '(body)', reason: 'expected at least one request' }]);
  const queues = opts.queues ?? QUEUE_NAMES;
  const issues: FieldIssue[] = [];
  let bad = 0;
  const items: BatchItem[] = [];
  const note = (line: number, found: FieldIssue[]) => {
    bad++;
    for (const f of found) if (issues.length < MAX_LISTED_ISSUES) issues.push(f);
  };
  for (const e of entries) {
    const at = `lines[${e.line}]`;
    if (e.error !== undefined) {
      note(e.line, [{ field: at, reason: e.error }]);
      continue;
    }
    const v = e.value;
    if (typeof v !== 'object' || v === null || Array.isArray(v)) {
      note(e.line, [{ field: at, reason: 'expected an object {custom_id, queue, body}' }]);
      continue;
    }
    const found: FieldIssue[] = [];
    const { custom_id, queue, body, ...extra } = v as Record<string, unknown>;
    for (const k of Object.keys(extra)) found.push({ field: `${at}.${k}`, reason: 'unknown field' });
    if (typeof custom_id !== 'string' || custom_id.length === 0 || custom_id.length > MAX_CUSTOM_ID)
      found.push({ field: `${at}.custom_id`, reason: `expected a string of 1-${MAX_CUSTOM_ID} characters` });
    if (typeof queue !== 'string' || !isQueueName(queue) || !queues.includes(queue))
      found.push({ field: `${at}.queue`, reason: `expected one of ${queues.join(', ')}` });
    else if (typeof body !== 'object' || body === null || Array.isArray(body))
      found.push({ field: `${at}.body`, reason: `expected the request object of POST /v1/${queue}` });
    else {
      try {
        const data = opts.parse(queue, body);
        if (found.length === 0) items.push({ line: e.line, custom_id: custom_id as string, queue, data });
      } catch (err) {
        if (err instanceof ValidationError)
          for (const i of err.issues) found.push({ field: `${at}.body.${i.field}`, reason: i.reason });
        else if (err instanceof InputTooLargeError)
          found.push({
            field: `${at}.body.${err.field}`,
            reason: `${err.actualBytes} bytes is over the limit of ${err.limitBytes} bytes`,
          });
        else throw err;
      }
    }
    if (found.length > 0) note(e.line, found);
  }
  if (bad > 0) {
    if (issues.length >= MAX_LISTED_ISSUES)
      issues.push({
        field: '(body)',
        reason: `${bad} bad lines in all; the first ${MAX_LISTED_ISSUES} issues are listed`,
      });
    throw new BatchValidationError(issues, bad);
  }
  return items;
}

/** Some lines of a batch are bad: nothing was enqueued. `issues` name each line; `badLines` counts them. */
export class BatchValidationError extends ValidationError {
  constructor(
    issues: FieldIssue[],
    readonly badLines: number,
  ) {
    super(issues);
    this.message = `${badLines} bad line(s) in the batch; nothing was enqueued`;
  }
}

/** More requests than CELL0_BATCH_MAX_ITEMS: refused whole (413). */
export class BatchTooLargeError extends InputTooLargeError {
  /** What the 413 lists. */
  readonly issues: FieldIssue[];
  constructor(
    readonly maxItems: number,
    readonly items: number,
  ) {
    super('(body)', maxItems, items);
    this.message = `the batch holds ${items} requests; at most ${maxItems} are taken (CELL0_BATCH_MAX_ITEMS)`;
    this.issues = [{ field: '(body)', reason: `${items} requests; at most ${maxItems}` }];
  }
}

/** A batch body over CELL0_BATCH_MAX_BODY_BYTES: refused whole (413). */
export class BatchBodyTooLargeError extends InputTooLargeError {
  /** What the 413 lists. */
  readonly issues: FieldIssue[];
  constructor(maxBodyBytes: number, length: number | undefined) {
    super('(body)', maxBodyBytes, length ?? maxBodyBytes + 1);
    this.message = `the batch body is over the limit of ${maxBodyBytes} bytes (CELL0_BATCH_MAX_BODY_BYTES)`;
    this.issues = [{ field: '(body)', reason: `over ${maxBodyBytes} bytes` }];
  }
}
