import { type InferenceResult } from '../../../shared/queues/results.js';
import { type StreamUsage } from '../../../shared/queues/token-stream.js';

/*
 * Answers in OpenAI's shapes: chat.completion, text_completion, their stream chunks, and the usage object.
 */

/** Which route an answer belongs to. */
export type OpenAIKind = 'chat' | 'completion';

/** What every answer of one request repeats. */
export interface AnswerMeta {
  kind: OpenAIKind;
  /** chatcmpl-… / cmpl-…: derived from the job id, so callers sharing a generation see one id. */
  id: string;
  /** Unix seconds. */
  created: number;
  model: string;
}

/** Marks answers as cell0's (OpenAI's backend configuration fingerprint). */
export const SYSTEM_FINGERPRINT = 'cell0';

export function answerMeta(kind: OpenAIKind, jobId: string, model: string): AnswerMeta {
  const hex = jobId.replace(/^[a-z]-/, '');
  return {
    kind,
    id: `${kind === 'chat' ? 'chatcmpl' : 'cmpl'}-${hex}`,
    created: Math.floor(Date.now() / 1000),
    model,
  };
}

/** OpenAI's finish reasons: "length" when the token limit stopped it, else "stop". */
export function finishReasonOf(doneReason: string | undefined): 'stop' | 'length' {
  return doneReason === 'length' ? 'length' : 'stop';
}

export function usageOf(u: StreamUsage): {
  prompt_tokens: number;
  completion_tokens: number;
  total_tokens: number;
} {
  return {
    prompt_tokens: u.promptTokens,
    completion_tokens: u.completionTokens,
    total_tokens: u.totalTokens,
  };
}

/** The whole (non-streamed) answer. */
export function completionBody(meta: AnswerMeta, r: InferenceResult): Record<string, unknown> {
  const finish_reason = finishReasonOf(r.doneReason);
  const common = {
    id: meta.id,
    created: meta.created,
    model: r.model || meta.model,
    system_fingerprint: SYSTEM_FINGERPRINT,
  };
  if (meta.kind === 'chat')
    return {
      ...common,
      object: 'chat.completion',
      choices: [
        {
          index: 0,
          message: { role: 'assistant', content: r.text, refusal: null },
          logprobs: null,
          finish_reason,
        },
      ],
      usage: usageOf(r.usage),
    };
  return {
    ...common,
    object: 'text_completion',
    choices: [{ index: 0, text: r.text, logprobs: null, finish_reason }],
    usage: usageOf(r.usage),
  };
}

/**
 * One stream chunk. `text` undefined with `finish` undefined is the opening chunk (chat: the assistant
 * role); `finish` set is the closing one. With include_usage every chunk carries `usage: null`, as OpenAI's.
 */
export function chunkBody(
  meta: AnswerMeta,
  part: { text?: string; finish?: 'stop' | 'length'; role?: true },
  includeUsage: boolean,
): Record<string, unknown> {
  const finish_reason = part.finish ?? null;
  const common = {
    id: meta.id,
    created: meta.created,
    model: meta.model,
    system_fingerprint: SYSTEM_FINGERPRINT,
    ...(includeUsage ? { usage: null } : {}),
  };
  if (meta.kind === 'chat') {
    const delta: Record<string, string> = {};
    if (part.role) delta.role = 'assistant';
    if (part.text !== undefined) delta.content = part.text;
    else if (part.role) delta.content = '';
    return {
      ...common,
      object: 'chat.completion.chunk',
      choices: [{ index: 0, delta, logprobs: null, finish_reason }],
    };
  }
  return {
    ...common,
    object: 'text_completion',
    choices: [{ index: 0, text: part.text ?? '', logprobs: null, finish_reason }],
  };
}

/**
 * The JSON of a stream chunk of `meta` before and after its delta (chat) or text (completion), without the
 * finish reason: `JSON.stringify(chunkBody(meta, part, includeUsage))` is `head + delta + tail` for a part
 * that finishes nothing. Built by concatenation, in chunkBody's key order (the test holds them equal), so that
 * a stream's templates cost no object to build and stringify.
 */
function chunkFrame(meta: AnswerMeta, includeUsage: boolean): { head: string; tail: string } {
  const common =
    `{"id":${JSON.stringify(meta.id)},"created":${JSON.stringify(meta.created)},` +
    `"model":${JSON.stringify(meta.model)},"system_fingerprint":${JSON.stringify(SYSTEM_FINGERPRINT)}` +
    (includeUsage ? ',"usage":null' : '');
  return meta.kind === 'chat'
    ? {
        head: `${common},"object":"chat.completion.chunk","choices":[{"index":0,"delta":`,
        tail: ',"logprobs":null,"finish_reason":null}]}',
      }
    : {
        head: `${common},"object":"text_completion","choices":[{"index":0,"text":`,
        tail: ',"logprobs":null,"finish_reason":null}]}',
      };
}

/**
 * `JSON.stringify(chunkBody(meta, { text }, includeUsage))` for any `text`, without building the chunk
 * object each time: the JSON around the text is made once per answer, so a text chunk costs one string
 * escape of the text.
 */
export function textChunkWriter(meta: AnswerMeta, includeUsage: boolean): (text: string) => string {
  return textWriter(meta.kind, chunkFrame(meta, includeUsage));
}

function textWriter(
  kind: OpenAIKind,
  { head, tail }: { head: string; tail: string },
): (text: string) => string {
  if (kind === 'chat') {
    const open = `${head}{"content":`;
    const close = `}${tail}`;
    return (text) => open + JSON.stringify(text) + close;
  }
  return (text) => head + JSON.stringify(text) + tail;
}

/** What every chunk of one answer's stream repeats, made once (see {@link chunkTemplates}). */
export interface ChunkTemplates {
  /** The opening event (`data: …` with the assistant role, chat only; '' for completions). */
  readonly role: string;
  /** The event of a text chunk: `data: ${JSON.stringify(chunkBody(meta, { text }))}` and the blank line. */
  readonly text: (text: string) => string;
}

/** Answers' templates by meta; emptied when it holds {@link TEMPLATES_KEPT} (a few live answers at a time). */
const templates = new Map<string, ChunkTemplates>();
const TEMPLATES_KEPT = 256;

/**
 * The chunk templates of an answer, shared by every answer with the same meta: the callers of one job (identical
 * requests joined to one generation: same id, model, second and usage flag) get one object, so the opening event
 * is made once and a text chunk's event once per text for all of them (the last text's event is kept), rather
 * than once per caller as the hub hands each entry to each of them.
 */
export function chunkTemplates(meta: AnswerMeta, includeUsage: boolean): ChunkTemplates {
  // No field but the model can hold a newline, and the last one is one character: the key is unambiguous.
  const key = `${meta.kind}\n${meta.id}\n${meta.created}\n${meta.model}\n${includeUsage ? 1 : 0}`;
  const known = templates.get(key);
  if (known) return known;
  if (templates.size >= TEMPLATES_KEPT) templates.clear();
  const frame = chunkFrame(meta, includeUsage);
  const chunk = textWriter(meta.kind, frame);
  let lastText: string | undefined;
  let lastEvent = '';
  const made: ChunkTemplates = {
    role: meta.kind === 'chat' ? `data: ${frame.head}{"role":"assistant","content":""}${frame.tail}\n\n` : '',
    text: (text) => {
      if (text !== lastText) {
        lastEvent = `data: ${chunk(text)}\n\n`;
        lastText = text;
      }
      return lastEvent;
    },
  };
  templates.set(key, made);
  return made;
}

/** The last chunk when include_usage: no choices, the usage. */
export function usageChunkBody(meta: AnswerMeta, usage: StreamUsage): Record<string, unknown> {
  return {
    id: meta.id,
    created: meta.created,
    model: meta.model,
    system_fingerprint: SYSTEM_FINGERPRINT,
    object: meta.kind === 'chat' ? 'chat.completion.chunk' : 'text_completion',
    choices: [],
    usage: usageOf(usage),
  };
}
