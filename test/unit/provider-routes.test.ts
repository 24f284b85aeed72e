import {
  matchesPattern,
  parseModelRoutes,
  parseRateLimits,
  rateLimitFor,
  type RateLimitSpec,
} from '../../shared/config/provider-routes';

/** The message of the Error `fn` throws; fails when it does not throw. */
function messageOf(fn: () => unknown): string {
  try {
    fn();
  } catch (err) {
    expect(err).toBeInstanceOf(Error);
    return (err as Error).message;
  }
  throw new Error('expected a throw');
}

describe('parseModelRoutes', () => {
  it('parses pattern=kind[@url] entries in order, trimming blanks and empty entries', () => {
    expect(
      parseModelRoutes(
        ' qwen2.5:* = ollama@http://gpu-1:11434/ , gpt-4o*=openai@https://api.example.com/v1//,, *=ollama ',
      ),
    ).toEqual([
      { pattern: 'qwen2.5:*', kind: 'ollama', url: 'http://gpu-1:11434' },
      { pattern: 'gpt-4o*', kind: 'openai', url: 'https://api.example.com/v1' },
      { pattern: '*', kind: 'ollama' },
    ]);
    expect(parseModelRoutes('')).toEqual([]);
    expect(parseModelRoutes(' , ,')).toEqual([]);
    // No url means "the kind's configured URL": the property is absent, not undefined-valued.
    expect(Object.keys(parseModelRoutes('m=openai')[0]!)).toEqual(['pattern', 'kind']);
  });

  it('accepts the documented pattern characters', () => {
    expect(parseModelRoutes('org/model_v1.2-q4+fast:*=openai')).toEqual([
      { pattern: 'org/model_v1.2-q4+fast:*', kind: 'openai' },
    ]);
  });

  it('names the bad entry and says what is wrong', () => {
    expect(messageOf(() => parseModelRoutes('a=ollama, llama3'))).toBe(
      '"llama3": expected pattern=ollama|openai[@url]',
    );
    expect(messageOf(() => parseModelRoutes('=ollama'))).toBe(
      '"=ollama": expected pattern=ollama|openai[@url]',
    );
    expect(messageOf(() => parseModelRoutes('m=vllm'))).toBe(
      '"m=vllm": backend must be ollama or openai, got "vllm"',
    );
    expect(messageOf(() => parseModelRoutes('m=Ollama'))).toMatch(
      /backend must be ollama or openai, got "Ollama"/,
    );
    expect(messageOf(() => parseModelRoutes('m=@http://h:1'))).toMatch(
      /backend must be ollama or openai, got ""/,
    );
    expect(messageOf(() => parseModelRoutes('bad pattern=ollama'))).toBe(
      '"bad pattern=ollama": pattern may hold letters, digits, . : / _ - + and *',
    );
    expect(messageOf(() => parseModelRoutes('m?=ollama'))).toMatch(/^"m\?=ollama": pattern may hold/);
    expect(messageOf(() => parseModelRoutes('m=ollama@not a url'))).toBe(
      '"m=ollama@not a url": "not a url" is not a URL',
    );
    expect(messageOf(() => parseModelRoutes('m=ollama@'))).toBe('"m=ollama@": "" is not a URL');
    expect(messageOf(() => parseModelRoutes('m=openai@ftp://h/x'))).toBe(
      '"m=openai@ftp://h/x": expected an http(s) URL',
    );
  });
});

describe('matchesPattern', () => {
  it.each([
    ['*', 'anything:at-all', true],
    ['*', '', true],
    ['qwen2.5:*', 'qwen2.5:7b', true],
    ['qwen2.5:*', 'qwen2.5:', true],
    ['qwen2.5:*', 'qwen2x5:7b', false], // "." is literal, not "any character"
    ['qwen2.5:*', 'xqwen2.5:7b', false], // anchored at the start
    ['llama3', 'llama3', true],
    ['llama3', 'llama3:8b', false], // anchored at the end
    ['*-instruct', 'mistral-7b-instruct', true],
    ['*-instruct', 'mistral-instruct-v2', false],
    ['gpt-*-mini', 'gpt-4o-mini', true],
    ['gpt-*-mini', 'gpt--mini', true],
    ['gpt-*-mini', 'gpt-4o-mini-2024', false],
    ['a+b', 'a+b', true], // "+" is literal
    ['a+b', 'aab', false],
    ['*:*', 'm:tag', true],
    ['*:*', 'mtag', false],
  ])('%s vs %s → %s', (pattern, model, expected) => {
    expect(matchesPattern(pattern, model)).toBe(expected);
  });

  it('answers the same from the matchers it keeps, also once more patterns than it keeps were seen', () => {
    // Each pattern's matcher is made once and kept (at most 256): asked again, and after 300 other patterns
    // have pushed it out, a pattern still matches exactly as before.
    const cases: [string, string, boolean][] = [
      ['qwen2.5:*', 'qwen2.5:7b', true],
      ['qwen2.5:*', 'qwen2x5:7b', false],
      ['llama3', 'llama3', true],
      ['llama3', 'llama3:8b', false],
      ['*', 'm', true],
    ];
    for (let round = 0; round < 3; round++) {
      for (const [pattern, model, expected] of cases) expect(matchesPattern(pattern, model)).toBe(expected);
      for (let i = 0; i < 300; i++) {
        expect(matchesPattern(`m${round}-${i}-*`, `m${round}-${i}-x`)).toBe(true);
        expect(matchesPattern(`m${round}-${i}-*`, `m${round}-${i + 1}-x`)).toBe(false);
        expect(matchesPattern(`m${round}-${i}`, `m${round}-${i}`)).toBe(true);
      }
    }
  });

  it('routes the first matching entry (order is kept by the parser)', () => {
    const routes = parseModelRoutes('gpt-*=openai@https://api.example.com,*=ollama');
    const route = (model: string) => routes.find((r) => matchesPattern(r.pattern, model));
    expect(route('gpt-4o')).toMatchObject({ kind: 'openai', url: 'https://api.example.com' });
    expect(route('llama3')).toMatchObject({ kind: 'ollama' });
  });
});

describe('parseRateLimits', () => {
  it('parses kinds and origins with rate, capacity and maxInFlight', () => {
    expect(
      parseRateLimits(
        'ollama=5, brave=1/1, openai=0.5/3/2, http://GPU-1:11434/api=20/40/8, https://h.example:443=2',
      ),
    ).toEqual([
      { target: 'ollama', rate: 5, capacity: 5, maxInFlight: 0 },
      { target: 'brave', rate: 1, capacity: 1, maxInFlight: 0 },
      { target: 'openai', rate: 0.5, capacity: 3, maxInFlight: 2 },
      // An origin target is normalised to scheme://host:port (lower-cased host, path dropped, default port).
      { target: 'http://gpu-1:11434', rate: 20, capacity: 40, maxInFlight: 8 },
      { target: 'https://h.example', rate: 2, capacity: 2, maxInFlight: 0 },
    ]);
    expect(parseRateLimits('')).toEqual([]);
  });

  it('defaults capacity to max(1, rate) and maxInFlight to 0 (also when left empty)', () => {
    expect(parseRateLimits('searxng=0.2')[0]).toEqual({
      target: 'searxng',
      rate: 0.2,
      capacity: 1,
      maxInFlight: 0,
    });
    expect(parseRateLimits('searxng=7.5')[0]!.capacity).toBe(7.5);
    expect(parseRateLimits('ollama=3//4')[0]).toEqual({
      target: 'ollama',
      rate: 3,
      capacity: 3,
      maxInFlight: 4,
    });
    expect(parseRateLimits('ollama=3/10/')[0]).toEqual({
      target: 'ollama',
      rate: 3,
      capacity: 10,
      maxInFlight: 0,
    });
    expect(parseRateLimits('ollama = 3 / 10 / 2')[0]).toEqual({
      target: 'ollama',
      rate: 3,
      capacity: 10,
      maxInFlight: 2,
    });
  });

  it('names the bad entry and says what is wrong', () => {
    expect(messageOf(() => parseRateLimits('ollama=1, brave'))).toBe(
      '"brave": expected target=rate[/capacity[/maxInFlight]]',
    );
    expect(messageOf(() => parseRateLimits('=5'))).toBe(
      '"=5": expected target=rate[/capacity[/maxInFlight]]',
    );
    for (const rate of ['', '0', '-1', 'abc', 'Infinity'])
      expect(messageOf(() => parseRateLimits(`ollama=${rate}`))).toBe(
        `"ollama=${rate}": rate must be a number of requests per second > 0`,
      );
    expect(messageOf(() => parseRateLimits('ollama=5/0.5'))).toBe(
      '"ollama=5/0.5": capacity must be a number >= 1',
    );
    expect(messageOf(() => parseRateLimits('ollama=5/x'))).toBe(
      '"ollama=5/x": capacity must be a number >= 1',
    );
    for (const n of ['-1', '1.5', 'x'])
      expect(messageOf(() => parseRateLimits(`ollama=5/5/${n}`))).toBe(
        `"ollama=5/5/${n}": maxInFlight must be an integer >= 0`,
      );
    expect(messageOf(() => parseRateLimits('ollama=5/5/1/1'))).toBe(
      '"ollama=5/5/1/1": at most rate/capacity/maxInFlight',
    );
    // A target that is neither a provider kind nor a URL (a misspelt kind) is not called a bad URL.
    expect(messageOf(() => parseRateLimits('olama=5'))).toBe(
      '"olama=5": target must be ollama, openai, brave, searxng or an http(s) origin, got "olama"',
    );
    expect(messageOf(() => parseRateLimits('Ollama=5'))).toMatch(/target must be .* got "Ollama"$/);
    expect(messageOf(() => parseRateLimits('http://=5'))).toBe('"http://=5": "http://" is not a URL');
    expect(messageOf(() => parseRateLimits('ftp://h:21=5'))).toBe('"ftp://h:21=5": expected an http(s) URL');
  });
});

describe('rateLimitFor', () => {
  const specs: RateLimitSpec[] = parseRateLimits(
    'ollama=5, http://gpu-1:11434=50/100/4, openai=1, http://gpu-2:11434=7',
  );

  it('prefers the entry naming the origin over the one naming the kind, whatever their order', () => {
    expect(rateLimitFor(specs, 'ollama', 'http://gpu-1:11434')).toEqual({
      target: 'http://gpu-1:11434',
      rate: 50,
      capacity: 100,
      maxInFlight: 4,
    });
    // The origin entry comes after the kind entry in the list and still wins.
    expect(rateLimitFor(specs, 'ollama', 'http://gpu-2:11434')).toMatchObject({
      target: 'http://gpu-2:11434',
      rate: 7,
    });
    const reversed = [...specs].reverse();
    expect(rateLimitFor(reversed, 'ollama', 'http://gpu-1:11434')!.target).toBe('http://gpu-1:11434');
  });

  it('falls back to the kind entry, and to nothing', () => {
    expect(rateLimitFor(specs, 'ollama', 'http://gpu-9:11434')).toMatchObject({ target: 'ollama', rate: 5 });
    expect(rateLimitFor(specs, 'openai', 'https://api.example.com')).toMatchObject({
      target: 'openai',
      rate: 1,
    });
    expect(rateLimitFor(specs, 'brave', 'https://api.search.brave.com')).toBeUndefined();
    expect(rateLimitFor([], 'ollama', 'http://gpu-1:11434')).toBeUndefined();
  });

  it('takes the first of two entries for the same target', () => {
    const dup = parseRateLimits('ollama=1, ollama=2');
    expect(rateLimitFor(dup, 'ollama', 'http://x:1')!.rate).toBe(1);
  });

  it('matches the origin form the parser produces (normalised)', () => {
    const s = parseRateLimits('HTTP://Gpu-1:11434/v1/=9');
    expect(rateLimitFor(s, 'openai', new URL('http://gpu-1:11434/v1/chat').origin)!.rate).toBe(9);
  });
});
