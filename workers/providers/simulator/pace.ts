import { type GpuSlot } from './gpu-model.js';

/** When a generation's tokens are due: a fixed speed, or the shared speed of a GPU slot. */
export interface Pace {
  /** When the first token is due (after load and prompt evaluation). */
  readonly firstDue: number;
  /** Tokens due by `now` (not capped by the answer's length). */
  due(now: number): number;
  /** When the `count`-th token is due, as far as can be told at `now`. */
  timeOf(count: number, now: number): number;
  /** Time per token right now, ms (for the durations Ollama reports). */
  msPerToken(): number;
}

/** One token every 1000 / tokensPerSec ms after the first, whatever else is running. */
export function fixedPace(firstDue: number, tokensPerSec: number): Pace {
  const interval = 1000 / tokensPerSec;
  return {
    firstDue,
    due: (now) => (now < firstDue ? 0 : Math.floor((now - firstDue) / interval) + 1),
    timeOf: (count) => firstDue + (count - 1) * interval,
    msPerToken: () => interval,
  };
}

/** Tokens at the speed the slot's model gives each of its busy slots, which changes as requests come and go. */
export function gpuPace(firstDue: number, slot: GpuSlot): Pace {
  return {
    firstDue,
    due: (now) => {
      if (now < firstDue) return 0;
      slot.startDecode(firstDue);
      return slot.produced(now);
    },
    timeOf: (count, now) =>
      now < firstDue ? firstDue + (count - 1) * slot.msPerToken() : slot.timeOf(count, now),
    msPerToken: () => slot.msPerToken(),
  };
}
