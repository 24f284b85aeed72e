import { z } from 'zod';
import { type FieldIssue } from '../../errors.js';
import { parseModelRoutes, type ModelRoute } from '../provider-routes.js';
import { issue, type EnvVar, type ParsedEnv } from '../env-var.js';
import { httpUrl, parsedList } from '../schemas.js';

/*
 * Backends: which inference and search backends the workers call, and which model goes where.
 * The section's variables (listed under it in docs/configuration.md) and how they become its part of
 * the Config; shared/config/config.ts composes the sections.
 */

export const BACKENDS_ENV = {
  CELL0_OLLAMA_URL: {
    section: 'backends',
    schema: httpUrl,
    doc: 'Ollama (or Ollama-compatible) base URL. Unset: `cell0 start` runs the bundled simulator in its place when a model is routed to Ollama; `cell0 worker` uses http://127.0.0.1:11434',
  },
  CELL0_OPENAI_URL: {
    section: 'backends',
    schema: httpUrl,
    doc: 'OpenAI-compatible base URL including /v1 (vLLM, llama.cpp server, hosted APIs), e.g. http://127.0.0.1:8000/v1',
  },
  CELL0_OPENAI_API_KEY: {
    section: 'backends',
    schema: z.string().trim().min(1, 'expected a key'),
    doc: 'API key sent as a Bearer token to CELL0_OPENAI_URL (and to openai@URL routes)',
    secret: true,
  },
  CELL0_MODEL_ROUTES: {
    section: 'backends',
    schema: parsedList(parseModelRoutes),
    doc: 'Which backend serves which model: pattern=ollama|openai[@url], comma-separated, first match wins, * is a wildcard (e.g. qwen2.5:*=ollama,gpt-*=openai). Default: *=ollama, or *=openai when only CELL0_OPENAI_URL is set',
  },
  CELL0_SEARXNG_URL: {
    section: 'backends',
    schema: httpUrl,
    doc: 'SearXNG base URL (its JSON format must be enabled); enables provider "searxng"',
  },
  CELL0_BRAVE_API_KEY: {
    section: 'backends',
    schema: z.string().trim().min(1, 'expected a key'),
    doc: 'Brave Search API subscription token; enables provider "brave"',
    secret: true,
  },
  CELL0_BRAVE_URL: {
    section: 'backends',
    default: 'https://api.search.brave.com',
    schema: httpUrl,
    doc: 'Base URL of the Brave Search API',
  },
  CELL0_SEARCH_CORPUS_DIR: {
    section: 'backends',
    schema: z.string().trim().min(1, 'expected a folder path'),
    doc: 'Folder of documents for the local search provider (default: the bundled data/corpus)',
  },
} satisfies Record<string, EnvVar>;

/** The backends of Config.providers (its guards are in guards.ts, its HTTP pool in pool.ts). */
export interface BackendsConfig {
  /** Undefined when not configured (see CELL0_OLLAMA_URL). */
  ollamaUrl: string | undefined;
  openaiUrl: string | undefined;
  openaiApiKey: string | undefined;
  /** As configured; undefined = the default route (see CELL0_MODEL_ROUTES). */
  modelRoutes: ModelRoute[] | undefined;
  searxngUrl: string | undefined;
  braveApiKey: string | undefined;
  braveUrl: string;
  searchCorpusDir: string | undefined;
}

/** Checks across the section's variables (run once each is valid on its own). */
export function checkBackends(p: ParsedEnv<typeof BACKENDS_ENV>): FieldIssue[] {
  const bare = (p.CELL0_MODEL_ROUTES ?? []).find((r) => r.kind === 'openai' && r.url === undefined);
  return bare && p.CELL0_OPENAI_URL === undefined
    ? issue(
        'CELL0_MODEL_ROUTES',
        `route "${bare.pattern}=openai" needs CELL0_OPENAI_URL (or write openai@URL)`,
      )
    : [];
}

export function loadBackends(p: ParsedEnv<typeof BACKENDS_ENV>): BackendsConfig {
  return {
    ollamaUrl: p.CELL0_OLLAMA_URL,
    openaiUrl: p.CELL0_OPENAI_URL,
    openaiApiKey: p.CELL0_OPENAI_API_KEY,
    modelRoutes: p.CELL0_MODEL_ROUTES,
    searxngUrl: p.CELL0_SEARXNG_URL,
    braveApiKey: p.CELL0_BRAVE_API_KEY,
    braveUrl: p.CELL0_BRAVE_URL,
    searchCorpusDir: p.CELL0_SEARCH_CORPUS_DIR,
  };
}
