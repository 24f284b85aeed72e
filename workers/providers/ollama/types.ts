/*
 * Request and response shapes of the Ollama REST API (https://github.com/ollama/ollama/blob/main/docs/api.md),
 * spelled as Ollama spells them (snake_case) so bodies can be sent and read without mapping. Durations in
 * responses are NANOseconds, as Ollama reports them.
 */

/**
 * How long the model stays loaded after a request: a number of seconds, or a Go duration string ("30s",
 * "5m", "1h30m"). 0 unloads right after the request; a negative value keeps it loaded forever.
 */
export type KeepAlive = number | string;

/** `"json"`, or a JSON schema the output must follow (structured outputs). */
export type ResponseFormat = 'json' | Record<string, unknown>;

/**
 * Model (runner) options. The well-known ones are typed; Ollama accepts more, so the record stays open.
 */
export interface ModelOptions {
  temperature?: number;
  top_p?: number;
  top_k?: number;
  min_p?: number;
  typical_p?: number;
  /** Maximum tokens to generate; -1 = no limit, -2 = fill the context. */
  num_predict?: number;
  seed?: number;
  stop?: string[];
  num_ctx?: number;
  num_batch?: number;
  num_gpu?: number;
  num_thread?: number;
  num_keep?: number;
  repeat_penalty?: number;
  repeat_last_n?: number;
  presence_penalty?: number;
  frequency_penalty?: number;
  [option: string]: number | string | string[] | boolean | undefined;
}

/** POST /api/generate */
export interface GenerateRequest {
  model: string;
  /** Omitted or empty (and no images): Ollama only loads the model and answers done_reason "load". */
  prompt?: string;
  /** Text after the model's response (fill-in-the-middle). */
  suffix?: string;
  system?: string;
  template?: string;
  /** Context returned by an earlier generate call, to continue that conversation. Deprecated by Ollama. */
  context?: number[];
  /** Default true: the answer comes as NDJSON chunks. */
  stream?: boolean;
  /** Send the prompt as is, with no template. */
  raw?: boolean;
  format?: ResponseFormat;
  /** Base64-encoded images for multimodal models. */
  images?: string[];
  options?: ModelOptions;
  keep_alive?: KeepAlive;
  /** For thinking models: separate the thinking from the answer. */
  think?: boolean;
}

/** Timing and count fields Ollama puts on the final chunk. Durations in nanoseconds. */
export interface GenerationStats {
  /** Why generation ended: "stop", "length", "load", "unload" (and others in future versions). */
  done_reason?: string;
  total_duration?: number;
  load_duration?: number;
  prompt_eval_count?: number;
  prompt_eval_duration?: number;
  eval_count?: number;
  eval_duration?: number;
}

/** One chunk of a /api/generate answer (or the whole answer when stream is false). */
export interface GenerateResponse extends GenerationStats {
  model: string;
  /** ISO 8601 time stamp. */
  created_at: string;
  response: string;
  thinking?: string;
  done: boolean;
  /** Final chunk only: tokens of the conversation, to pass back as `context`. */
  context?: number[];
}

export type ChatRole = 'system' | 'user' | 'assistant' | 'tool';

/** A function call the model asks for. */
export interface ToolCall {
  function: {
    name: string;
    arguments: Record<string, unknown>;
  };
}

/** A tool the model may call. */
export interface Tool {
  type: 'function';
  function: {
    name: string;
    description?: string;
    /** JSON schema of the arguments. */
    parameters: Record<string, unknown>;
  };
}

export interface ChatMessage {
  role: ChatRole;
  content: string;
  /** Base64-encoded images. */
  images?: string[];
  tool_calls?: ToolCall[];
  thinking?: string;
  /** On role "tool" messages: which tool produced this result. */
  tool_name?: string;
}

/** POST /api/chat */
export interface ChatRequest {
  model: string;
  /** Empty: Ollama only loads the model and answers done_reason "load". */
  messages: ChatMessage[];
  tools?: Tool[];
  /** Default true: the answer comes as NDJSON chunks. */
  stream?: boolean;
  format?: ResponseFormat;
  options?: ModelOptions;
  keep_alive?: KeepAlive;
  think?: boolean;
}

/** One chunk of a /api/chat answer (or the whole answer when stream is false). */
export interface ChatResponse extends GenerationStats {
  model: string;
  created_at: string;
  message: ChatMessage;
  done: boolean;
}

/** POST /api/embed */
export interface EmbedRequest {
  model: string;
  /** Omitted: Ollama only loads the model and answers with no embeddings. */
  input?: string | string[];
  /** Default true: cut inputs longer than the context; false: refuse them with an error. */
  truncate?: boolean;
  options?: ModelOptions;
  keep_alive?: KeepAlive;
  /** Output dimensions, for models that support shortening their embeddings. */
  dimensions?: number;
}

/** Answer of POST /api/embed. Durations in nanoseconds. */
export interface EmbedResponse {
  model: string;
  /** One vector per input, in input order. */
  embeddings: number[][];
  total_duration?: number;
  load_duration?: number;
  prompt_eval_count?: number;
}

/** POST /api/embeddings (legacy, superseded by /api/embed). */
export interface LegacyEmbeddingsRequest {
  model: string;
  prompt?: string;
  options?: ModelOptions;
  keep_alive?: KeepAlive;
}

/** Answer of POST /api/embeddings. */
export interface LegacyEmbeddingsResponse {
  embedding: number[];
}

export interface ModelDetails {
  parent_model: string;
  /** "gguf" */
  format: string;
  family: string;
  families: string[] | null;
  /** e.g. "7.6B" */
  parameter_size: string;
  /** e.g. "Q4_K_M" */
  quantization_level: string;
}

/** A model loaded in memory (GET /api/ps). */
export interface RunningModel {
  name: string;
  model: string;
  /** Bytes. */
  size: number;
  digest: string;
  details: ModelDetails;
  /** ISO 8601: when the model will be unloaded if unused. */
  expires_at: string;
  /** Bytes of the model held in GPU memory. */
  size_vram: number;
  context_length?: number;
}

/** GET /api/ps */
export interface PsResponse {
  models: RunningModel[];
}

/** A model available locally (GET /api/tags). */
export interface LocalModel {
  name: string;
  model: string;
  /** ISO 8601 */
  modified_at: string;
  /** Bytes. */
  size: number;
  digest: string;
  details: ModelDetails;
}

/** GET /api/tags */
export interface TagsResponse {
  models: LocalModel[];
}

/** GET /api/version */
export interface VersionResponse {
  version: string;
}

/** Body of every Ollama error answer, and of an error line inside a stream. */
export interface ErrorResponse {
  error: string;
}

// Client-side additions (not part of the Ollama wire format).

/** Timings measured by the client, in milliseconds. */
export interface ClientTimings {
  /** Time to the first chunk with non-empty text; equals totalMs when not streaming (or no text came). */
  ttftMs: number;
  /** Time from sending the request to having read the whole answer. */
  totalMs: number;
}

/** A whole /api/generate answer: the final chunk's fields, with `response` holding the full text. */
export interface GenerateResult extends GenerateResponse {
  clientTimings: ClientTimings;
}

/** A whole /api/chat answer: the final chunk's fields, with `message.content` holding the full text. */
export interface ChatResult extends ChatResponse {
  clientTimings: ClientTimings;
}

/** Per-call options of generate() and chat(). */
export interface GenerateCallOptions {
  /** Aborting it rejects the call with the signal's reason and closes the connection. */
  signal?: AbortSignal;
  /** Called with the text of each streamed chunk that has text, in order. Not called when stream is false. */
  onToken?: (text: string) => void;
}
