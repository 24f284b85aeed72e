/*
 * Deterministic fake model output. The same request always gives the same text (and the same vector), so
 * tests can compare answers and caches can be exercised; nothing here is meant to be meaningful.
 */

/** 32-bit FNV-1a of a string's UTF-16 code units. */
export function fnv1a(text: string, seed = 0x811c9dc5): number {
  let hash = seed >>> 0;
  for (let i = 0; i < text.length; i++) {
    hash ^= text.charCodeAt(i);
    hash = Math.imul(hash, 0x01000193) >>> 0;
  }
  return hash >>> 0;
}

/** mulberry32: a small, fast PRNG with a 32-bit state. Returns floats in [0, 1). */
export function mulberry32(seed: number): () => number {
  let state = seed >>> 0;
  return () => {
    state = (state + 0x6d2b79f5) >>> 0;
    let t = state;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

const VOCABULARY = (
  'the a an this that each every some many few system model request queue worker job cache answer question ' +
  'token stream batch server client network memory latency throughput signal result value pattern design ' +
  'process thread record message channel buffer window layer vector index search document source summary ' +
  'reason detail example method approach problem solution change update version test report metric ' +
  'runs moves holds builds reads writes sends takes makes keeps finds shows gives uses needs helps starts ' +
  'checks stores returns handles tracks splits joins waits grows drops scales measures improves reduces ' +
  'quickly slowly carefully often rarely always usually clearly simply mostly nearly already still soon ' +
  'fast slow large small simple clear stable useful careful quiet steady early late local remote shared ' +
  'new old good better best common rare hidden open closed ready busy idle full empty warm cold ' +
  'with without into over under after before between across through around about within along ' +
  'and or but so because while when where if then also yet again'
).split(' ');

/** Shortest and longest natural answer, in tokens (the marker counts as one). */
export const MIN_NATURAL_TOKENS = 24;
export const MAX_NATURAL_TOKENS = 160;

/** What decides the generated text. */
export interface TextSeed {
  model: string;
  /** The prompt (generate) or a canonical rendering of the messages (chat). */
  input: string;
  /** options.seed */
  seed?: number;
  /** options.temperature */
  temperature?: number;
}

/** The marker every simulated answer starts with, so nobody mistakes it for a real model's output. */
export function simulatedMarker(model: string): string {
  return `[simulated ${model}]`;
}

function hashSeed(seed: TextSeed): number {
  return fnv1a([seed.model, seed.input, seed.seed ?? '', seed.temperature ?? ''].join('\u0000'));
}

/**
 * The full natural answer as tokens (one word, with its leading space and punctuation, per token; the
 * marker is the first token). Its length is between MIN_NATURAL_TOKENS and MAX_NATURAL_TOKENS, chosen by
 * the hash of the seed; joining the tokens gives the text.
 */
export function simulatedTokens(seed: TextSeed): string[] {
  const hash = hashSeed(seed);
  const random = mulberry32(hash);
  const length = MIN_NATURAL_TOKENS + (hash % (MAX_NATURAL_TOKENS - MIN_NATURAL_TOKENS + 1));
  const tokens = [simulatedMarker(seed.model)];
  let sentenceLeft = 0;
  while (tokens.length < length) {
    const startOfSentence = sentenceLeft === 0;
    if (startOfSentence) sentenceLeft = 5 + Math.floor(random() * 10);
    let word = VOCABULARY[Math.floor(random() * VOCABULARY.length)] ?? 'the';
    if (startOfSentence) word = word.charAt(0).toUpperCase() + word.slice(1);
    sentenceLeft--;
    const lastToken = tokens.length === length - 1;
    if (sentenceLeft === 0 || lastToken) {
      word += '.';
      sentenceLeft = 0;
    } else if (random() < 0.08) {
      word += ',';
    }
    tokens.push(' ' + word);
  }
  return tokens;
}

/** Why a simulated generation stopped, as Ollama's done_reason. */
export type SimDoneReason = 'stop' | 'length';

/** The tokens to emit for one request and why they end there. */
export interface PlannedText {
  tokens: string[];
  doneReason: SimDoneReason;
}

/**
 * Cuts the natural answer to what the request allows: at most `numPredict` tokens (when > 0; Ollama's -1
 * and -2 mean no limit) → "length"; then at the first stop sequence after the marker → "stop".
 */
export function planText(seed: TextSeed, numPredict: number, stop: readonly string[] = []): PlannedText {
  const natural = simulatedTokens(seed);
  let tokens = natural;
  let doneReason: SimDoneReason = 'stop';
  if (numPredict > 0 && numPredict < natural.length) {
    tokens = natural.slice(0, numPredict);
    doneReason = 'length';
  }
  const stops = stop.filter((s) => s.length > 0);
  if (stops.length > 0 && tokens.length > 1) {
    const marker = tokens[0] ?? '';
    const body = tokens.slice(1).join('');
    let cut = -1;
    for (const s of stops) {
      const at = body.indexOf(s);
      if (at !== -1 && (cut === -1 || at < cut)) cut = at;
    }
    if (cut !== -1) {
      const kept = [marker];
      let used = 0;
      for (const token of tokens.slice(1)) {
        if (used + token.length <= cut) {
          kept.push(token);
          used += token.length;
        } else {
          if (cut > used) kept.push(token.slice(0, cut - used));
          break;
        }
      }
      return { tokens: kept, doneReason: 'stop' };
    }
  }
  return { tokens, doneReason };
}

/** Words of a text, split on whitespace. */
export function countWords(text: string): number {
  const trimmed = text.trim();
  return trimmed.length === 0 ? 0 : trimmed.split(/\s+/).length;
}

/** The simulator's stand-in for a tokenizer count: words × 1.3, rounded. */
export function estimateTokens(text: string): number {
  return Math.round(countWords(text) * 1.3);
}

/** Vocabulary size of the fake token ids (that of Qwen2). */
const TOKEN_ID_SPACE = 151_936;

/** Fake token ids for `context`: one id per word, derived from the word. Not a real tokenizer. */
export function contextIds(text: string): number[] {
  const trimmed = text.trim();
  if (trimmed.length === 0) return [];
  return trimmed.split(/\s+/).map((word) => fnv1a(word) % TOKEN_ID_SPACE);
}

/** How many dimensions each feature touches: spreads the vector without losing locality. */
const DIMS_PER_FEATURE = 4;

function features(text: string): Array<[feature: string, weight: number]> {
  const words = text.toLowerCase().match(/[\p{L}\p{N}]+/gu) ?? [];
  const out: Array<[string, number]> = [];
  for (const word of words) {
    out.push([`w:${word}`, 1]);
    const padded = `^${word}$`;
    for (let i = 0; i + 3 <= padded.length; i++) out.push([`t:${padded.slice(i, i + 3)}`, 0.5]);
  }
  return out;
}

/**
 * A unit-length vector for a text: a hashed bag of words and character trigrams, each feature adding a
 * fixed ±weight to a few dimensions. Identical texts give identical vectors; texts sharing words give
 * vectors with a high cosine similarity. A text with no words gets a fixed vector of its own.
 */
export function simulatedEmbedding(text: string, dims: number): number[] {
  const vector = new Float64Array(dims);
  const feats = features(text);
  if (feats.length === 0) feats.push(['\u0000empty', 1]);
  for (const [feature, weight] of feats) {
    const random = mulberry32(fnv1a(feature));
    for (let k = 0; k < DIMS_PER_FEATURE; k++) {
      const index = Math.floor(random() * dims);
      const sign = random() < 0.5 ? -1 : 1;
      vector[index] = (vector[index] ?? 0) + sign * weight;
    }
  }
  let norm = 0;
  for (const v of vector) norm += v * v;
  norm = Math.sqrt(norm);
  if (norm === 0) {
    // Features cancelled out exactly (rare): fall back to a one-hot vector chosen by the text.
    const out = new Array<number>(dims).fill(0);
    out[fnv1a(text) % dims] = 1;
    return out;
  }
  return Array.from(vector, (v) => v / norm);
}
