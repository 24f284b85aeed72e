import { ConfigError } from '../../shared/errors';

/** 1 µs: comfortably above the resolution of a double holding epoch ms (2^-12 ms ≈ 0.24 µs in 2026). */
export const EPOCH_MS_RESOLUTION = 0.001;

/**
 * The token-bucket guarantee on grant times: over ANY interval [a, b] at most capacity + rate × (b − a)
 * tokens are granted. Returns the first violation found (undefined when none). The only slack is 1 µs on
 * the interval: grant times are epoch milliseconds in a double, whose resolution there is ~0.25 µs.
 */
export function intervalViolation(
  grantedAt: number[],
  rate: number,
  capacity: number,
): { from: number; to: number; count: number; bound: number } | undefined {
  const g = [...grantedAt].sort((x, y) => x - y);
  for (let i = 0; i < g.length; i++)
    for (let j = i; j < g.length; j++) {
      const count = j - i + 1;
      const bound = capacity + (rate * (g[j]! - g[i]! + EPOCH_MS_RESOLUTION)) / 1000;
      if (count > bound) return { from: g[i]!, to: g[j]!, count, bound };
    }
  return undefined;
}

/** The fields a ConfigError thrown by `fn` names; fails the test when `fn` throws nothing or something else. */
export function configErrorFields(fn: () => unknown): string[] {
  try {
    fn();
  } catch (err) {
    expect(err).toBeInstanceOf(ConfigError);
    return (err as ConfigError).issues.map((i) => i.field);
  }
  throw new Error('expected a ConfigError');
}

/** A grant as the rate limiter reports it (`permit:granted`): when the tokens were reserved and granted for. */
export interface GrantTimes {
  tokens: number;
  reservedAt: number;
  grantedAt: number;
}

/**
 * The other half of a token bucket's promise: it does not hold back tokens it has. A caller that had to
 * wait is granted the moment the bucket holds its tokens, so its grant comes at most tokens / rate after
 * the previous grant (exactly that when the previous one waited too). Returns the first grant that waited
 * longer (undefined when none). Load-proof: both times are the bucket's own, not when a caller ran.
 */
export function packingViolation(
  grants: GrantTimes[],
  rate: number,
): { prev: number; grantedAt: number; gapMs: number; maxGapMs: number } | undefined {
  const g = [...grants].sort((x, y) => x.grantedAt - y.grantedAt);
  for (let i = 1; i < g.length; i++) {
    const cur = g[i]!;
    if (cur.grantedAt - cur.reservedAt <= EPOCH_MS_RESOLUTION) continue; // granted at once
    const gapMs = cur.grantedAt - g[i - 1]!.grantedAt;
    const maxGapMs = (cur.tokens * 1000) / rate + EPOCH_MS_RESOLUTION;
    if (gapMs > maxGapMs) return { prev: g[i - 1]!.grantedAt, grantedAt: cur.grantedAt, gapMs, maxGapMs };
  }
  return undefined;
}
