/*
 * Synthetic prompts for bench:semantic: templates × vocabulary, the shape of what services send a model
 * (how-to questions, comparisons, writing tasks, conversions, travel, recipes, debugging), deterministic
 * for a seed. Prompts of one template share most function words and differ in their content words, which
 * is the hard case for a similarity index: many mid-similarity neighbours.
 */
import { seededRandom } from '../shared/cache/semantic/lsh.js';

const V = {
  lang: 'Python JavaScript TypeScript Go Rust Java Kotlin Ruby PHP Swift C# Scala Elixir Haskell Lua Dart'.split(
    ' ',
  ),
  task: [
    'reverse a linked list',
    'parse a CSV file',
    'read a JSON config',
    'sort a dictionary by value',
    'merge two sorted arrays',
    'remove duplicates from a list',
    'debounce a function',
    'retry an HTTP request',
    'stream a large file',
    'validate an email address',
    'flatten a nested array',
    'count word frequencies',
    'generate a UUID',
    'hash a password',
    'paginate database results',
    'schedule a cron job',
    'send an email with attachments',
    'compress a folder',
    'resize an image',
    'connect to PostgreSQL',
    'write unit tests for a class',
    'handle timeouts in async code',
    'implement a binary search',
    'build a REST endpoint',
    'cache expensive function calls',
    'log structured events',
    'measure memory usage',
    'profile slow code',
    'implement rate limiting',
    'upload files to S3',
    'read environment variables',
    'format dates in ISO 8601',
  ],
  thing: [
    'laptops',
    'running shoes',
    'noise-cancelling headphones',
    'budget smartphones',
    'electric bikes',
    'standing desks',
    'mechanical keyboards',
    'coffee grinders',
    'hiking backpacks',
    'air purifiers',
    'robot vacuums',
    'gaming monitors',
    'office chairs',
    'camping tents',
    'espresso machines',
    'e-readers',
    'fitness trackers',
    'wireless earbuds',
    'blenders',
    'winter jackets',
  ],
  purpose: [
    'students',
    'programmers',
    'beginners',
    'travel',
    'a small apartment',
    'video editing',
    'marathon training',
    'working from home',
    'families with kids',
    'seniors',
    'photography',
    'small businesses',
  ],
  concept: [
    'quantum entanglement',
    'photosynthesis',
    'compound interest',
    'the theory of relativity',
    'blockchain',
    'machine learning',
    'inflation',
    'supply and demand',
    'natural selection',
    'the immune system',
    'black holes',
    'public key cryptography',
    'the water cycle',
    'plate tectonics',
    'neural networks',
    'the stock market',
    'climate change',
    'vaccines',
    'recursion',
    'garbage collection',
    'the CAP theorem',
    'consensus algorithms',
    'game theory',
    'opportunity cost',
    'the French Revolution',
    'the Renaissance',
    'DNA replication',
    'the greenhouse effect',
  ],
  audience: [
    'a five year old',
    'a high school student',
    'a software engineer',
    'my grandmother',
    'a beginner',
    'an expert',
  ],
  doc: [
    'poem',
    'short story',
    'blog post',
    'cover letter',
    'product description',
    'tweet',
    'speech',
    'haiku',
    'limerick',
    'newsletter',
  ],
  topic: [
    'the ocean',
    'autumn leaves',
    'remote work',
    'artificial intelligence',
    'friendship',
    'a lost cat',
    'the first day of school',
    'space exploration',
    'coffee',
    'city life',
    'a rainy Monday',
    'electric cars',
    'mountain hiking',
    'learning to code',
    'a wedding',
    'retirement',
    'a startup launch',
    'the night sky',
  ],
  tone: ['funny', 'formal', 'heartfelt', 'short', 'persuasive', 'melancholic', 'upbeat', 'professional'],
  city: [
    'Paris',
    'Rome',
    'Tokyo',
    'New York',
    'London',
    'Berlin',
    'Madrid',
    'Lisbon',
    'Prague',
    'Vienna',
    'Seoul',
    'Bangkok',
    'Sydney',
    'Toronto',
    'Chicago',
    'Boston',
    'Dublin',
    'Amsterdam',
    'Athens',
    'Istanbul',
    'Cairo',
    'Mumbai',
    'Singapore',
    'Mexico City',
  ],
  dish: [
    'lasagna',
    'pad thai',
    'banana bread',
    'chicken curry',
    'vegetable soup',
    'pancakes',
    'risotto',
    'chili',
    'guacamole',
    'apple pie',
    'ramen',
    'falafel',
    'paella',
    'brownies',
    'pizza dough',
    'hummus',
  ],
  ingredient: ['eggs', 'gluten', 'dairy', 'sugar', 'nuts', 'an oven', 'butter', 'meat', 'yeast', 'onions'],
  device: [
    'laptop',
    'phone',
    'router',
    'printer',
    'smart TV',
    'car',
    'dishwasher',
    'washing machine',
    'PC',
    'tablet',
  ],
  symptom: [
    'overheat',
    'restart randomly',
    'drain the battery',
    'make a clicking noise',
    'lose wifi',
    'freeze',
    'run slowly',
    'refuse to turn on',
  ],
  event: [
    'an update',
    'a power outage',
    'I dropped it',
    'a factory reset',
    'a few hours of use',
    'charging overnight',
  ],
  skill: [
    'Spanish',
    'the guitar',
    'chess',
    'public speaking',
    'touch typing',
    'SQL',
    'watercolor painting',
    'swimming',
    'calculus',
    'photography',
    'negotiation',
    'Japanese',
  ],
  unitPair: [
    ['celsius', 'fahrenheit'],
    ['miles', 'kilometers'],
    ['pounds', 'kilograms'],
    ['cups', 'milliliters'],
    ['inches', 'centimeters'],
    ['feet', 'meters'],
    ['ounces', 'grams'],
    ['gallons', 'liters'],
  ],
  company:
    'Apple Google Microsoft Amazon Tesla Netflix Nvidia Meta Spotify Airbnb Stripe Shopify Uber Adobe Intel Oracle IBM Samsung Sony Siemens'.split(
      ' ',
    ),
  role: [
    'product manager',
    'data scientist',
    'nurse',
    'teacher',
    'backend engineer',
    'designer',
    'accountant',
    'sales lead',
    'site reliability engineer',
    'marketing manager',
    'pharmacist',
    'lawyer',
    'mobile developer',
    'recruiter',
    'architect',
    'chef',
  ],
  n: ['3', '5', '7', '10', '12', '15', '20'],
  price: ['100', '200', '300', '500', '800', '1000', '1500', '2000'],
  month: 'January February March April June July August September October November December'.split(' '),
  constraint: ['any libraries', 'recursion', 'external dependencies', 'a framework', 'loops', 'mutation'],
  phrase: [
    'good morning',
    'where is the train station',
    'thank you very much',
    'I would like a coffee',
    'how much does this cost',
    'nice to meet you',
    'see you tomorrow',
    'the bill, please',
    'I am lost',
    'happy birthday',
  ],
  natlang:
    'French German Italian Spanish Portuguese Japanese Korean Dutch Greek Turkish Polish Swedish'.split(' '),
  year: ['2019', '2020', '2021', '2022', '2023', '2024', '2025'],
};

type Vocab = typeof V;
type Pick = <K extends keyof Vocab>(k: K) => Vocab[K][number];

/** Templates: each builds one prompt from picks of the vocabulary. */
const TEMPLATES: ((p: Pick) => string)[] = [
  (p) => `How do I ${p('task')} in ${p('lang')}?`,
  (p) => `Write a ${p('lang')} function to ${p('task')}`,
  (p) => `What is the fastest way to ${p('task')} in ${p('lang')}?`,
  (p) => `Show me an example of how to ${p('task')} using ${p('lang')}`,
  (p) => `What are the best ${p('thing')} for ${p('purpose')} in ${p('year')}?`,
  (p) => `Recommend ${p('n')} ${p('thing')} for ${p('purpose')}`,
  (p) => `Explain ${p('concept')} to ${p('audience')}`,
  (p) => `What is ${p('concept')} and why does it matter?`,
  (p) => `Summarize ${p('concept')} in ${p('n')} sentences`,
  (p) => `Write a ${p('tone')} ${p('doc')} about ${p('topic')}`,
  (p) => `Draft a ${p('tone')} ${p('doc')} for a ${p('role')} role at ${p('company')}`,
  (p) => `What is the cheapest way to get from ${p('city')} to ${p('city')}?`,
  (p) => `Plan a ${p('n')} day trip to ${p('city')} on a budget`,
  (p) => `What should I see in ${p('city')} if I only have ${p('n')} hours?`,
  (p) => `Give me a recipe for ${p('dish')} without ${p('ingredient')}`,
  (p) => `How long should I bake ${p('dish')} at 180 degrees?`,
  (p) => `Why does my ${p('device')} ${p('symptom')} after ${p('event')}?`,
  (p) => `How can I fix a ${p('device')} that keeps trying to ${p('symptom')}?`,
  (p) => `What is the best way to learn ${p('skill')} as an adult?`,
  (p) => `Make a ${p('n')} week plan to learn ${p('skill')}`,
  (p) => {
    const [a, b] = p('unitPair');
    return `Convert ${p('n')} ${a} to ${b}`;
  },
  (p) => {
    const [a, b] = p('unitPair');
    return `How many ${b} are in ${p('n')} ${a}?`;
  },
  (p) => `What questions are asked in a ${p('role')} interview at ${p('company')}?`,
  (p) => {
    // "A and B" = "B and A": keep one order, so a reordering is never counted as a different prompt
    const [a, b] = [p('lang'), p('lang')].sort();
    return `Compare ${a} and ${b} for ${p('purpose')}`;
  },
  (p) => `Is ${p('lang')} faster than ${p('lang')} to ${p('task')}?`,
  (p) => `What happened to ${p('company')} stock in ${p('year')}?`,
  (p) => `Write ${p('n')} interview questions for a ${p('role')}`,
  (p) => `List the pros and cons of ${p('thing')} for ${p('purpose')}`,
  (p) => `Write a ${p('tone')} ${p('doc')} about ${p('topic')} for ${p('audience')}`,
  (p) => `What are the best ${p('thing')} for ${p('purpose')} under ${p('price')} dollars?`,
  (p) => `How do I ${p('task')} in ${p('lang')} without ${p('constraint')}?`,
  (p) => `My ${p('device')} started to ${p('symptom')} after ${p('event')}, what should I do?`,
  (p) => `Plan a ${p('n')} day trip from ${p('city')} to ${p('city')} in ${p('month')}`,
  (p) => `Translate "${p('phrase')}" into ${p('natlang')}`,
  (p) => {
    const lang = p('lang');
    const [a, b] = [p('task'), p('task')].sort();
    return `Write a ${lang} script that can ${a} and ${b}`;
  },
];

/** A deterministic stream of prompts (duplicates possible; callers dedupe). */
export function promptStream(seed: string): () => string {
  const rand = seededRandom(seed);
  const pick: Pick = (k) => {
    const list = V[k] as readonly unknown[];
    return list[Math.floor(rand() * list.length)] as never;
  };
  return () => TEMPLATES[Math.floor(rand() * TEMPLATES.length)]!(pick);
}

/** `count` distinct prompts from `seed`, none of which is in `exclude` (compared after normalisation). */
export function distinctPrompts(
  seed: string,
  count: number,
  exclude: ReadonlySet<string> = new Set(),
  norm: (s: string) => string = (s) => s,
): string[] {
  const next = promptStream(seed);
  const seen = new Set<string>();
  const out: string[] = [];
  for (let guard = 0; out.length < count && guard < count * 1000; guard++) {
    const p = next();
    const k = norm(p);
    if (seen.has(k) || exclude.has(k)) continue;
    seen.add(k);
    out.push(p);
  }
  if (out.length < count)
    throw new Error(`semantic-corpus: only ${out.length} distinct prompts for ${count}`);
  return out;
}

/**
 * A rephrasing that keeps every content word: what a cache should answer from the stored prompt. Swaps
 * function words ("How do I" → "How can I", "Write" → "Can you write"), adds politeness, changes case and
 * trailing punctuation.
 */
export function paraphrase(prompt: string, rand: () => number): string {
  const rules: [RegExp, string[]][] = [
    [/^How do I /, ['How can I ', 'How would I ', 'How should I ']],
    [/^How can I /, ['How do I ', 'How would I ']],
    [/^Write /, ['Can you write ', 'Please write ', 'Could you write ']],
    [/^Explain /, ['Please explain ', 'Can you explain ']],
    [/^Give me /, ['Can you give me ', 'Please give me ', 'I need ']],
    [/^What is the /, ["What's the ", 'Tell me the ']],
    [/^What are the /, ['Which are the ', 'Tell me the ']],
    [/^Recommend /, ['Please recommend ', 'Can you recommend ']],
    [/^Summarize /, ['Please summarize ', 'Can you summarize ']],
    [/^List /, ['Please list ', 'Can you list ']],
    [/^Show me /, ['Please show me ', 'Can you show me ']],
    [/^Plan /, ['Please plan ', 'Help me plan ']],
    [/^Make /, ['Please make ', 'Can you make ']],
    [/^Convert /, ['Please convert ', 'Can you convert ']],
    [/^Compare /, ['Please compare ', 'Can you compare ']],
    [/^Draft /, ['Please draft ', 'Can you draft ']],
  ];
  let out = prompt;
  for (const [re, alts] of rules) {
    if (re.test(out)) {
      out = out.replace(re, alts[Math.floor(rand() * alts.length)]!);
      break;
    }
  }
  if (out === prompt) out = 'Please, ' + prompt.charAt(0).toLowerCase() + prompt.slice(1);
  out = out.replace(/[?.!]$/, '');
  return rand() < 0.5 ? out + '?' : out.toLowerCase();
}
