/** Parses CELL0_SEARCH_CACHE_TTLS: `type=seconds, …` with type one of the search types. */
export function parseSearchTtls(value: string): Record<string, number> {
  const types = ['web', 'news', 'academic', 'images', 'videos'];
  const out: Record<string, number> = {};
  for (const entry of value
    .split(',')
    .map((e) => e.trim())
    .filter((e) => e.length > 0)) {
    const [type, seconds, ...rest] = entry.split('=').map((x) => x.trim());
    if (rest.length > 0 || type === undefined || seconds === undefined)
      throw new Error(`"${entry}": expected type=seconds`);
    if (!types.includes(type)) throw new Error(`"${entry}": type must be one of ${types.join(', ')}`);
    const n = Number(seconds);
    if (!Number.isInteger(n) || n < 1) throw new Error(`"${entry}": seconds must be an integer >= 1`);
    out[type] = n;
  }
  return out;
}

/** Parses CELL0_SEMANTIC_THRESHOLDS: three cosines `high,medium,low`, each in (0, 1], high >= medium >= low. */
export function parseThresholds(value: string): { high: number; medium: number; low: number } {
  const parts = value.split(',').map((x) => Number(x.trim()));
  if (parts.length !== 3 || parts.some((x) => !Number.isFinite(x) || x <= 0 || x > 1))
    throw new Error('expected three numbers in (0, 1]: high,medium,low');
  const [high, medium, low] = parts as [number, number, number];
  if (!(high >= medium && medium >= low)) throw new Error('expected high >= medium >= low');
  return { high, medium, low };
}
