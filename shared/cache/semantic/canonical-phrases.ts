/*
 * The words of a prompt that restate nothing asked: contractions (expanded), politeness and request padding
 * (marked, not compared), request verbs. canonical.ts applies them.
 */

// ---- contractions -----------------------------------------------------------------------------------------

/** Contractions typed without the apostrophe, and irregular ones. */
export const BARE_CONTRACTIONS: ReadonlyMap<string, readonly string[]> = new Map<string, string[]>([
  ['whats', ['what', 'is']],
  ['wheres', ['where', 'is']],
  ['whos', ['who', 'is']],
  ['hows', ['how', 'is']],
  ['whens', ['when', 'is']],
  ['whys', ['why', 'is']],
  ['thats', ['that', 'is']],
  ['theres', ['there', 'is']],
  ['im', ['i', 'am']],
  ['ive', ['i', 'have']],
  ['youre', ['you', 'are']],
  ['theyre', ['they', 'are']],
  ['dont', ['do', 'not']],
  ['doesnt', ['does', 'not']],
  ['didnt', ['did', 'not']],
  ['isnt', ['is', 'not']],
  ['arent', ['are', 'not']],
  ['wasnt', ['was', 'not']],
  ['werent', ['were', 'not']],
  ['cant', ['can', 'not']],
  ['cannot', ['can', 'not']],
  ['couldnt', ['could', 'not']],
  ['shouldnt', ['should', 'not']],
  ['wouldnt', ['would', 'not']],
  ['wont', ['will', 'not']],
  ['hasnt', ['has', 'not']],
  ['havent', ['have', 'not']],
  ['hadnt', ['had', 'not']],
  ['mustnt', ['must', 'not']],
  ["can't", ['can', 'not']],
  ["won't", ['will', 'not']],
  ["shan't", ['shall', 'not']],
  ["ain't", ['is', 'not']],
  ["let's", ['let', 'us']],
]);

/** Words after which 's is "is" (or "has"), not a possessive. */
export const IS_HOSTS: ReadonlySet<string> = new Set(
  'what where who how when why which that there here it he she this everything something nothing'.split(' '),
);

// Module constants: a regex literal in a function body is a new RegExp object on every call.
const CONTRACTION = /^(.+)'(s|re|ve|ll|d|m)$/;
const APOSTROPHES = /'/g;

/** Lower-case words of one token, contractions expanded and a possessive dropped. */
export function expand(lower: string): readonly string[] {
  const bare = BARE_CONTRACTIONS.get(lower);
  if (bare) return bare;
  if (!lower.includes("'")) return [lower];
  if (lower.endsWith("n't")) return [lower.slice(0, -3), 'not'];
  const m = CONTRACTION.exec(lower);
  if (!m) return [lower.replace(APOSTROPHES, '')];
  const [, host, tail] = m as unknown as [string, string, string];
  switch (tail) {
    case 's':
      return IS_HOSTS.has(host) ? [host, 'is'] : [host];
    case 're':
      return [host, 'are'];
    case 've':
      return [host, 'have'];
    case 'll':
      return [host, 'will'];
    case 'd':
      return [host, 'would'];
    default:
      return [host, 'am'];
  }
}

// ---- politeness ---------------------------------------------------------------------------------------------

/**
 * Padding around a request. Matched as whole phrases on the expanded lower-case words, longest first. Short
 * openers ("can you", "could you") count only before a request verb, so "can you eat raw eggs" keeps them.
 */
export const POLITE_PHRASES: readonly string[] = [
  'i would really appreciate it if you could',
  'i would appreciate it if you could',
  'i would really appreciate it if you',
  'i would appreciate it if you',
  'i would be very grateful if you could',
  'i would be really grateful if you could',
  'i would be grateful if you could',
  'i would be grateful if you',
  'it would be great if you could',
  'it would help if you could',
  'would you be so kind as to',
  'could you be so kind as to',
  'be so kind as to',
  'if it is not too much trouble',
  'if it is not too much to ask',
  'if it is not too much',
  'if you could',
  'any help would be appreciated',
  'any help is appreciated',
  'i could use some help',
  'i need some help',
  'i need help',
  'dear assistant',
  'thank you so much',
  'thank you very much',
  'thank you in advance',
  'thanks in advance',
  'thanks so much',
  'thanks very much',
  'thanks a lot',
  'thanks a bunch',
  'many thanks',
  'thank you',
  'thanks',
  'cheers',
  'much appreciated',
  'i would appreciate it',
  'i appreciate it',
  'sorry to bother you',
  'sorry to ask',
  'sorry',
  'excuse me',
  'if you have a moment',
  'if you have a minute',
  'if you have time',
  'if you do not mind',
  'if you can',
  'if possible',
  'when you get a chance',
  'would you mind',
  'do you mind',
  'i was wondering',
  'i am wondering',
  'i wonder',
  'i would like to know',
  'i would like to understand',
  'i want to know',
  'i need to know',
  'i am curious',
  'i am curious about',
  'i would love to know',
  'do you know',
  'does anyone know',
  'can i ask',
  'may i ask',
  'quick question',
  'help me understand',
  'help me figure out',
  'help me with',
  'let me know',
  'tell me',
  'please',
  'kindly',
  'hi',
  'hello',
  'hey',
  'greetings',
  'by any chance',
  'in simple terms',
  'in a nutshell',
  'briefly',
];
export const POLITE_OPENERS: readonly string[] = [
  'could you please',
  'can you please',
  'would you please',
  'will you please',
  'could you',
  'can you',
  'would you',
  'will you',
  'are you able to',
];
/** Verbs that make a request ("explain", "tell me"): the request's form, not its topic. */
export const REQUEST_VERBS: ReadonlySet<string> = new Set(
  (
    'explain tell describe define list name give show compute calculate find suggest recommend provide ' +
    'clarify outline identify share help teach walk guide figure work write'
  ).split(' '),
);

export function phraseList(list: readonly string[]): (readonly string[])[] {
  return list.map((p) => p.split(' ')).sort((a, b) => b.length - a.length);
}
/** Phrases by their first word, longest first: a token is checked against its own few only. */
export function byFirstWord(list: readonly string[]): ReadonlyMap<string, (readonly string[])[]> {
  const out = new Map<string, (readonly string[])[]>();
  for (const p of phraseList(list)) out.set(p[0]!, [...(out.get(p[0]!) ?? []), p]);
  return out;
}
export const POLITE = byFirstWord(POLITE_PHRASES);
export const OPENERS = byFirstWord(POLITE_OPENERS);

/** True when the words from `i` on are `phrase` (each word's `lower` compared). */
export function matchAt(
  words: readonly { readonly lower: string }[],
  i: number,
  phrase: readonly string[],
): boolean {
  for (let k = 0; k < phrase.length; k++) if (words[i + k]?.lower !== phrase[k]) return false;
  return true;
}
