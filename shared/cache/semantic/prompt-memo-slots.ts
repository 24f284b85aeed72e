import { textHash } from './prompt-memo-doorkeeper.js';

/**
 * What was computed for recent texts, in a fixed table: a text has one slot (by its hash), and keeping a
 * text drops whatever that slot held. The memos of the lookup path (prepared prompts, canonical forms, the
 * guard's analyses) keep their values here rather than in a Map.
 *
 * Why not a Map with the oldest key deleted on each insert: a Map that has reached the old generation
 * allocates its next hash tables there too, and a table replaced when it fills up (a rehash, every few
 * dozen inserts at this churn) still points at everything it held; from the old generation those pointers
 * keep the young values alive through every scavenge until the next mark-compact, so nearly every value the
 * memo ever kept was copied and promoted, whatever its size (4 to 1,024 entries: ~1 MB per scavenge over
 * 20,000 distinct prompts embedded, 250 KB with no memo). A slot that is overwritten points at the new
 * value only: the old one dies young when nothing else holds it.
 */
export class MemoSlots<V> {
  private readonly keys: (string | undefined)[];
  private readonly values: (V | undefined)[];
  private readonly mask: number;

  /** `slots`: a power of two. */
  constructor(slots: number) {
    if (!Number.isInteger(slots) || slots < 1 || (slots & (slots - 1)) !== 0)
      throw new TypeError(`MemoSlots: option "slots" must be a power of two, got ${slots}`);
    this.keys = new Array<string | undefined>(slots).fill(undefined);
    this.values = new Array<V | undefined>(slots).fill(undefined);
    this.mask = slots - 1;
  }

  /** The slot of `text`: pass it to get() and set(). */
  slotOf(text: string): number {
    return this.slotOfHash(textHash(text));
  }

  /** The slot of a text whose textHash is `h`. */
  slotOfHash(h: number): number {
    return (h ^ (h >>> 16)) & this.mask;
  }

  /** The value kept for `text` in `slot` (slotOf(text)), if it is still there. */
  get(slot: number, text: string): V | undefined {
    return this.keys[slot] === text ? this.values[slot] : undefined;
  }

  /** Keeps `value` for `text` in `slot` (slotOf(text)), in place of what the slot held. */
  set(slot: number, text: string, value: V): void {
    this.keys[slot] = text;
    this.values[slot] = value;
  }
}
