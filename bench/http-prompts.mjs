// bench:http-shaped unique prompts for the standalone semantic benches (bench/semantic-miss-cpu.mjs,
// bench/embed.mjs): "Request T-i: tell me about <12 hex digits> and <i·7919>", the hex digits from a seeded
// linear congruential generator, so two runs (and two builds) see the same prompts in the same order.

/** A generator of 12 hex digits, seeded as both benches always were. */
export function seededHex(seed = 0x2545f491) {
  return () => {
    let s = '';
    for (let k = 0; k < 3; k++) {
      seed = (Math.imul(seed, 1103515245) + 12345) >>> 0;
      s += (seed >>> 8).toString(16).padStart(6, '0').slice(0, 4);
    }
    return s;
  };
}

/** The bench:http-shaped prompt `i` of run `tag`, its hex digits taken from `hex`. */
export const httpPrompt = (hex, tag, i) => `Request ${tag}-${i}: tell me about ${hex()} and ${i * 7919}`;
