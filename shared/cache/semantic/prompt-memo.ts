import { promptId } from './scope.js';
import { normalizePrompt } from './text.js';

/**
 * What one prompt costs to prepare, kept for the next call with the same prompt. A class whose every field
 * is set in the constructor: all prepared prompts share one hidden class whatever was computed for them
 * and in which order (a lookup fills vec, bands, fields; a store vec, bands, quantized). Object literals
 * that gained those fields later had several, and the lookup optimised for one of them was thrown away
 * ("wrong map") on meeting another, then recompiled, in steady state.
 */
export class PreparedPrompt {
  /** The embedding, once computed. */
  vec: Float32Array | undefined = undefined;
  /** Its LSH band values (undefined: a zero vector, no bands), once computed (hasBands). */
  bands: number[] | undefined = undefined;
  hasBands = false;
  /** Its band fields as the lookup scripts take them (scope.ts bandFields), once built. */
  fields: string | undefined = undefined;
  /** The embedding int8-quantised, in the form it is stored (vector-codec.ts storedForm), once computed. */
  quantized: Buffer | undefined = undefined;

  constructor(
    readonly normalized: string,
    /** The exact key's id of the normalised prompt. */
    readonly id: string,
  ) {}
}

/** Prompts longer than this (characters) are prepared each time, not kept. */
const MAX_PROMPT = 4096;

const shared = new WeakMap<object, Map<string, PromptMemo>>();

/**
 * The normal form, id, embedding and band values of recent prompts (least recently used dropped past
 * `size`). A request's prompt is looked up by the producer and stored by the worker after its job ran:
 * in a process that is both (`cell0 start`: the API's cache and the worker's are two SemanticCaches), the
 * store reuses what the lookup computed instead of normalising, embedding and hashing the prompt a second
 * time, as both take their memo from PromptMemo.of with the same embedder. Vectors are never changed after
 * they are kept.
 */
export class PromptMemo {
  private readonly map = new Map<string, PreparedPrompt>();

  constructor(private readonly size = 1024) {}

  /**
   * The memo shared by every cache of this process that embeds with this `embedder` object (the same
   * vectors) and hashes with the same LSH layout (`lsh`, e.g. "20x12": the same bands).
   */
  static of(embedder: object, lsh: string): PromptMemo {
    let byLayout = shared.get(embedder);
    if (!byLayout) shared.set(embedder, (byLayout = new Map()));
    let memo = byLayout.get(lsh);
    if (!memo) byLayout.set(lsh, (memo = new PromptMemo()));
    return memo;
  }

  /** The prepared form of `prompt` (normal form and id computed now when not kept). */
  get(prompt: string): PreparedPrompt {
    const kept = this.map.get(prompt);
    if (kept) {
      // most recently used last
      this.map.delete(prompt);
      this.map.set(prompt, kept);
      return kept;
    }
    const normalized = normalizePrompt(prompt);
    const p = new PreparedPrompt(normalized, promptId(normalized));
    if (prompt.length <= MAX_PROMPT && this.size > 0) {
      this.map.set(prompt, p);
      if (this.map.size > this.size) this.map.delete(this.map.keys().next().value!);
    }
    return p;
  }
}
