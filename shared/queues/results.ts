/** What an inference job returns (the job's returnvalue). */
export interface InferenceResult {
  model: string;
  /** The generated text (Ollama's `response`, or the assistant message's content for chat). */
  text: string;
  /** "stop", "length", … as the backend reports it. */
  doneReason: string;
  usage: { promptTokens: number; completionTokens: number; totalTokens: number };
  timings: {
    /** Time to first token as the worker measured it, ms. */
    ttftMs?: number;
    /** Whole provider call, ms, as the worker measured it. */
    totalMs: number;
    /** Model load time the backend reported, ms. */
    loadMs?: number;
    /** Generation speed the backend reported. */
    tokensPerSec?: number;
  };
  /** Which provider served it ("ollama", "noop"). */
  provider: string;
  /** host:pid of the worker that ran it. */
  servedBy: string;
}

/** One search hit, normalised across providers. */
export interface SearchHit {
  title: string;
  url: string;
  snippet: string;
  /** Where it came from (corpus file, site name). */
  source: string;
  /** 1-based position in the full result list. */
  rank: number;
  score: number;
  publishedAt?: string;
}

/** What a search job returns. */
export interface SearchResult {
  query: string;
  provider: string;
  type: string;
  /** Matches in all, before offset/limit. */
  total: number;
  hits: SearchHit[];
  tookMs: number;
  servedBy: string;
}
