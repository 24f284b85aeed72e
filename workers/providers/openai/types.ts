/*
 * Request and response shapes of the OpenAI REST API (chat completions, embeddings, models), as OpenAI
 * and compatible servers (vLLM, llama.cpp server, hosted gateways) spell them: snake_case, so bodies are
 * sent and read without mapping. Only the fields cell0 uses or is likely to need are typed.
 */

/** Role of a chat message. "developer" is OpenAI's newer name for "system" on reasoning models. */
export type OpenAIRole = 'system' | 'developer' | 'user' | 'assistant' | 'tool';

/** A function call the model asks for (non-streamed answers). */
export interface OpenAIToolCall {
  id: string;
  type: 'function';
  function: { name: string; /** JSON text. */ arguments: string };
}

/** One message of a conversation. */
export interface OpenAIChatMessage {
  role: OpenAIRole;
  /** Null on assistant messages that only carry tool calls. */
  content: string | null;
  name?: string;
  tool_calls?: OpenAIToolCall[];
  /** On role "tool" messages: which call this answers. */
  tool_call_id?: string;
}

/** Why generation ended. Servers may add their own values. */
export type FinishReason =
  'stop' | 'length' | 'tool_calls' | 'content_filter' | 'function_call' | (string & {});

/**
 * POST /chat/completions. The record stays open: compatible servers take more sampling fields (vLLM and
 * llama.cpp: `top_k`, `repetition_penalty`, `min_p`), which OpenAI itself refuses.
 */
export interface ChatCompletionRequest {
  model: string;
  messages: OpenAIChatMessage[];
  temperature?: number;
  top_p?: number;
  /** Most tokens to generate. OpenAI's reasoning models want `max_completion_tokens` instead. */
  max_tokens?: number;
  max_completion_tokens?: number;
  seed?: number;
  stop?: string | string[];
  presence_penalty?: number;
  frequency_penalty?: number;
  n?: number;
  /** Default false here as at OpenAI; the client streams unless this is false. */
  stream?: boolean;
  /** Only allowed when streaming. The client always asks for usage on streamed calls. */
  stream_options?: { include_usage?: boolean };
  response_format?: { type: 'text' | 'json_object' | 'json_schema'; json_schema?: Record<string, unknown> };
  user?: string;
  /** Not an OpenAI field; vLLM and llama.cpp server accept it. */
  top_k?: number;
  /** Not an OpenAI field; vLLM and llama.cpp server accept it. */
  repetition_penalty?: number;
  [param: string]: unknown;
}

/** Token counts of a call. */
export interface CompletionUsage {
  prompt_tokens: number;
  completion_tokens: number;
  total_tokens: number;
  prompt_tokens_details?: { cached_tokens?: number } | null;
  completion_tokens_details?: { reasoning_tokens?: number } | null;
}

/** The assistant message of a non-streamed answer. */
export interface ChatCompletionMessage {
  role: 'assistant';
  content: string | null;
  refusal?: string | null;
  tool_calls?: OpenAIToolCall[];
  /** Thinking text, as vLLM and llama.cpp server report it for reasoning models (not an OpenAI field). */
  reasoning_content?: string | null;
}

/** One choice of a non-streamed answer. */
export interface ChatCompletionChoice {
  index: number;
  message: ChatCompletionMessage;
  finish_reason: FinishReason | null;
  logprobs?: unknown;
}

/** Answer of a non-streamed POST /chat/completions. */
export interface ChatCompletion {
  id: string;
  object: 'chat.completion';
  /** Unix seconds. */
  created: number;
  model: string;
  system_fingerprint?: string | null;
  choices: ChatCompletionChoice[];
  usage?: CompletionUsage | null;
}

/** The new part of a message carried by one stream chunk. */
export interface ChatCompletionDelta {
  role?: 'assistant';
  content?: string | null;
  reasoning_content?: string | null;
  refusal?: string | null;
  /** Partial tool calls; not aggregated by the client. */
  tool_calls?: unknown[];
}

/** One choice of a stream chunk. */
export interface ChatCompletionChunkChoice {
  index: number;
  delta: ChatCompletionDelta;
  finish_reason: FinishReason | null;
  logprobs?: unknown;
}

/**
 * One `data:` event of a streamed POST /chat/completions. With `stream_options.include_usage` the last
 * chunk before `[DONE]` has empty `choices` and carries `usage`; the others carry `usage: null`.
 */
export interface ChatCompletionChunk {
  id: string;
  object: 'chat.completion.chunk';
  created: number;
  model: string;
  system_fingerprint?: string | null;
  choices: ChatCompletionChunkChoice[];
  usage?: CompletionUsage | null;
}

/** POST /embeddings */
export interface EmbeddingsRequest {
  model: string;
  input: string | string[];
  /** Default "float". The client only reads float vectors. */
  encoding_format?: 'float';
  dimensions?: number;
  user?: string;
}

/** One vector of an embeddings answer. */
export interface Embedding {
  object: 'embedding';
  /** Position of its input. */
  index: number;
  embedding: number[];
}

/** Answer of POST /embeddings. */
export interface EmbeddingsResponse {
  object: 'list';
  data: Embedding[];
  model: string;
  usage?: { prompt_tokens: number; total_tokens: number };
}

/** A model the server can serve. */
export interface OpenAIModel {
  id: string;
  object: 'model';
  /** Unix seconds. */
  created: number;
  owned_by: string;
}

/** Answer of GET /models. */
export interface ModelsResponse {
  object: 'list';
  data: OpenAIModel[];
}

/** Body of an OpenAI error answer (and of an error event inside a stream). */
export interface OpenAIErrorBody {
  error: {
    message: string;
    type: string;
    param: string | null;
    /** A string at OpenAI ("model_not_found", "invalid_api_key"); a number at some compatible servers. */
    code: string | number | null;
  };
}

// Client-side additions (not part of the wire format).

/** Timings measured by the client, in milliseconds. */
export interface ClientTimings {
  /** Time to the first chunk with text; equals totalMs when not streaming (or when no text came). */
  ttftMs: number;
  /** Time from sending the request to having read the whole answer. */
  totalMs: number;
}

/**
 * A whole chat completion. For a streamed call the chunks are gathered into this non-streamed shape:
 * `choices[0].message.content` holds the whole text of choice 0, `finish_reason` and `usage` come from the
 * chunks that carried them. Only choice 0 is gathered; tool-call deltas are not.
 */
export interface ChatCompletionResult extends ChatCompletion {
  clientTimings: ClientTimings;
}

/** Per-call options of chatCompletions(). */
export interface ChatCallOptions {
  /** Aborting it rejects the call with the signal's reason and closes the connection. */
  signal?: AbortSignal;
  /** Called with the text of each streamed chunk that has text, in order. Not called when not streaming. */
  onToken?: (text: string) => void;
}

/** Per-call options of embeddings() and models(). */
export interface RequestOptions {
  /** Aborting it rejects the call with the signal's reason. */
  signal?: AbortSignal;
}
