import { promptId } from './scope.js';
import { normalizePrompt } from './text.js';
import { MemoSlots } from './prompt-memo-slots.js';
import { textHash } from './prompt-memo-doorkeeper.js';

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
  /**
   * The indices of the embedding's non-zero components, ascending, when the embedder gave them (a built-in
   * one, HashedFeatureEmbedder.embedOne): the code after it visits those, not every dimension.
   */
  nonZero: number[] | undefined = undefined;
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
    /**
     * The prompt's textHash (prompt-memo-doorkeeper.ts) when `hashed`: a memo finds its slot from it, so a
     * prompt is hashed once per lookup and store, not again each time its prepared form is kept.
     */
    readonly textHash: number,
    readonly hashed: boolean,
  ) {}
}

/** Prompts longer than this (characters) are prepared each time, not kept. */
const MAX_PROMPT = 4096;

const shared = new WeakMap<object, Map<string, PromptMemo>>();

/**
 * The normal form, id, embedding and band values of recent prompts (`size` slots, a power of two: a prompt
 * takes the slot of its hash, dropping what the slot held; see prompt-memo-slots.ts for why not a Map). A
 * request's prompt is looked up by the producer and stored by the worker after its job ran: in a process
 * that is both (`cell0 start`: the API's cache and the worker's are two SemanticCaches), the store reuses
 * what the lookup computed instead of normalising, embedding and hashing the prompt a second time, as both
 * take their memo from PromptMemo.of with the same embedder. Vectors are never changed after they are kept.
 */
export class PromptMemo {
  private readonly slots: MemoSlots<PreparedPrompt> | undefined;

  /** `size`: slots, a power of two, or 0 to keep nothing. */
  constructor(size = 1024) {
    this.slots = size === 0 ? undefined : new MemoSlots<PreparedPrompt>(size);
  }

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

  /** The prepared form of `prompt` (normal form and id computed now when not kept), kept from now on. */
  get(prompt: string): PreparedPrompt {
    const p = this.prepare(prompt);
    this.keep(prompt, p);
    return p;
  }

  /**
   * The prepared form of `prompt`: the kept one, else a new one (normal form and id computed now) that is not
   * kept until {@link keep} is called. A lookup keeps it only when it misses: a store follows only a miss,
   * and a prompt kept for nothing outlives the next scavenges in its slot, so it is copied and promoted
   * with its embedding and bands (at 100k entries in bench:semantic more than half the lookups hit).
   */
  prepare(prompt: string): PreparedPrompt {
    const slots = prompt.length <= MAX_PROMPT ? this.slots : undefined;
    const h = slots ? textHash(prompt) : 0;
    const kept = slots?.get(slots.slotOfHash(h), prompt);
    if (kept) return kept;
    const normalized = normalizePrompt(prompt);
    return new PreparedPrompt(normalized, promptId(normalized), h, slots !== undefined);
  }

  /**
   * Keeps `p` (the prepared form of `prompt`) in place of what its slot held: the slot found from the hash
   * `p` carries when it was prepared by a memo that hashed it (it is then the hash of `prompt`).
   */
  keep(prompt: string, p: PreparedPrompt): void {
    if (this.slots && prompt.length <= MAX_PROMPT)
      this.slots.set(this.slots.slotOfHash(p.hashed ? p.textHash : textHash(prompt)), prompt, p);
  }
}
