/**
 * Which texts were met lately, without keeping them: one 32-bit hash per slot of a direct-mapped table
 * (a text's slot is taken by the last text hashed to it). A memo asks it whether a text is met for the
 * second time before it keeps what it computed for it.
 *
 * Why: what a memo keeps outlives the young generation's next scavenges, so V8 copies it once and then
 * promotes it to the old generation, where only a mark-compact frees it. A memo that keeps every text it
 * meets copies and promotes everything it computes, although most texts (a lookup's new prompt, most
 * candidates at 100k entries) are never met again: in bench:semantic the guard's analysis memo answered
 * under 1% of its calls, and the analyses it kept were most of what each scavenge copied. Kept from their
 * second meeting on, the texts that do come back (a popular entry, a near neighbour of many lookups) are
 * still computed only twice, and the others cost no copy. A hash that two texts share only makes the
 * second kept early; what is kept stays keyed by the full text.
 */
export class Doorkeeper {
  private readonly slots: Int32Array;
  private readonly mask: number;

  /** `slots`: a power of two (a text stays recognisable while fewer texts than this came after it). */
  constructor(slots = 16_384) {
    if (!Number.isInteger(slots) || slots < 1 || (slots & (slots - 1)) !== 0)
      throw new TypeError(`Doorkeeper: option "slots" must be a power of two, got ${slots}`);
    this.slots = new Int32Array(slots);
    this.mask = slots - 1;
  }

  /** Records `text`; true when it was recorded before and its slot was not taken by another text since. */
  metAgain(text: string): boolean {
    // The low bits pick the slot, the whole hash is compared. A text whose hash is 0 matches an empty slot:
    // it is taken for met (kept at once), which is harmless.
    const h = textHash(text);
    const slot = (h ^ (h >>> 16)) & this.mask;
    const met = this.slots[slot] === h;
    this.slots[slot] = h;
    return met;
  }
}

/** FNV-1a over the UTF-16 code units (32 bits, signed). */
export function textHash(text: string): number {
  let h = 0x811c9dc5 | 0;
  for (let i = 0; i < text.length; i++) h = Math.imul(h ^ text.charCodeAt(i), 0x01000193);
  return h;
}
