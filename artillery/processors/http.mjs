// Processor of the HTTP scenarios: request bodies with realistic repetition, per-flow latency metrics, job
// polling. Loaded by artillery in its worker threads (plain ESM: artillery imports it as it is).
//
// Metrics it adds (all in the artillery JSON and the HTML report):
//   cell0.latency.<flow>     histogram, ms: response time of each flow's main request (chat, prompt,
//                            search, repeat, paraphrase, health, enqueue) and, for polled jobs,
//                            cell0.latency.poll_e2e from the 202 to the completed poll
//   cell0.ok / cell0.errors  counters: answers below 400 / the rest (4xx, 429, 5xx, and a 202 to a request
//                            that waited for its answer: not answered within its wait)
//   cell0.answers_per_sec            rate: successful answers per second (the throughput threshold reads it)
//   cell0.cached.<kind>      counters: answers the caches gave (exact, semantic)

/** Prompts asked over and over (the head of a realistic, Zipf-like distribution). */
const POPULAR = [
  'What is the capital of France?',
  'Explain what a message queue is in two sentences.',
  'Summarise the benefits of caching for an API.',
  'What does HTTP status 429 mean?',
  'Give three tips for writing clear commit messages.',
  'What is the difference between a process and a thread?',
  'Translate "good morning" into Spanish.',
  'What is Redis used for?',
  'Name the largest planet in the solar system.',
  'How does a circuit breaker protect a service?',
  'What is the boiling point of water at sea level?',
  'Write a haiku about autumn.',
];

/** Rephrasings of popular prompts: same request, other words (what the semantic cache is for). */
const PARAPHRASES = [
  "What's the capital of France?",
  'In two sentences, explain what a message queue is.',
  'What is the meaning of HTTP status code 429?',
  'What is the largest planet in our solar system?',
  'What is the difference between a thread and a process?',
  'Explain how a circuit breaker protects a service.',
  'What do people use Redis for?',
  'At sea level, what is the boiling point of water?',
];

/** Templates of unique prompts (a fresh subject each time, so neither cache nor coalescing can help). */
const SUBJECTS = [
  'queues',
  'databases',
  'compilers',
  'rivers',
  'volcanoes',
  'satellites',
  'bridges',
  'forests',
];
const TEMPLATES = [
  (s, n) => `Write a short paragraph about ${s}, angle number ${n}.`,
  (s, n) => `List ${2 + (n % 4)} facts about ${s} (request ${n}).`,
  (s, n) => `Explain ${s} to a ten-year-old, version ${n}.`,
];
const QUERIES = [
  'capital of Australia',
  'redis sorted sets',
  'HTTP 503 service unavailable',
  'noble gases',
  'largest countries by area',
  'what is a CDN',
  'periodic table halogens',
  'HTTP caching headers',
];

const MODEL = process.env.CELL0_LOAD_MODEL ?? 'qwen2.5:7b';
/** Longest answer of the HTTP flows, tokens: a chat turn, not an essay. */
const MAX_TOKENS = Number(process.env.CELL0_LOAD_MAX_TOKENS ?? 64);

let counter = 0;
const unique = () =>
  `${Date.now().toString(36)}-${process.pid}-${++counter}-${Math.floor(Math.random() * 1e9)}`;
const pick = (list) => list[Math.floor(Math.random() * list.length)];
/** Zipf-like: the first prompts of the list come back far more often than the last. */
const zipf = (list) => list[Math.min(list.length - 1, Math.floor(list.length * Math.random() ** 2))];

function uniquePrompt() {
  const n = counter + 1;
  return `${pick(TEMPLATES)(pick(SUBJECTS), n)} [${unique()}]`;
}

/** Sets the request bodies of every flow in the VU's variables (each flow uses the ones it needs). */
export function makeBodies(context, _events, done) {
  const params = { max_tokens: MAX_TOKENS, temperature: 0 };
  context.vars.model = MODEL;
  context.vars.chatBody = {
    model: MODEL,
    messages: [
      { role: 'system', content: 'You are a concise assistant.' },
      { role: 'user', content: uniquePrompt() },
    ],
    params,
  };
  context.vars.promptBody = { model: MODEL, prompt: uniquePrompt(), params };
  context.vars.repeatBody = { model: MODEL, prompt: zipf(POPULAR), params };
  context.vars.paraphraseBody = { model: MODEL, prompt: pick(PARAPHRASES), params };
  context.vars.enqueueBody = { model: MODEL, prompt: uniquePrompt(), params, wait: 0 };
  context.vars.searchBody = {
    query: Math.random() < 0.5 ? zipf(QUERIES) : `${pick(QUERIES)} ${unique()}`,
    limit: 5,
  };
  return done();
}

function record(flow, res, events) {
  const ms = res.timings?.phases?.total ?? res.timings?.response ?? undefined;
  if (typeof ms === 'number') events.emit('histogram', `cell0.latency.${flow}`, ms);
  // A 202 to a request that waited for its answer means it was not answered within `wait` (30 s): for the
  // user that is a failure, not a success. Only the enqueue flow (wait 0) expects 202.
  const pendingTooLong = res.statusCode === 202 && flow !== 'enqueue';
  const ok = res.statusCode < 400 && !pendingTooLong;
  // Both counters on every answer, so each exists (an ensure check on a missing metric fails).
  events.emit('counter', 'cell0.ok', ok ? 1 : 0);
  events.emit('counter', 'cell0.errors', ok ? 0 : 1);
  if (ok) events.emit('rate', 'cell0.answers_per_sec');
  if (res.statusCode === 200 && typeof res.body === 'string' && res.body.startsWith('{')) {
    try {
      const cached = JSON.parse(res.body).cached;
      if (cached === 'exact' || cached === 'semantic') events.emit('counter', `cell0.cached.${cached}`, 1);
    } catch {
      // not JSON: nothing to count
    }
  }
}

const recorder = (flow) =>
  function recordFlow(_req, res, _context, events, done) {
    record(flow, res, events);
    return done();
  };

export const recordChat = recorder('chat');
export const recordPrompt = recorder('prompt');
export const recordRepeat = recorder('repeat');
export const recordParaphrase = recorder('paraphrase');
export const recordSearch = recorder('search');
export const recordHealth = recorder('health');

/** After POST with wait 0: starts the poll clock. */
export function recordEnqueue(_req, res, context, events, done) {
  record('enqueue', res, events);
  context.vars.pollStartedAt = Date.now();
  context.vars.polls = 0;
  context.vars.jobState =
    res.statusCode === 200 ? 'completed' : res.statusCode === 202 ? 'pending' : 'failed';
  return done();
}

/** After each GET /v1/jobs/:queue/:id. */
export function recordPoll(_req, res, context, events, done) {
  context.vars.polls = (context.vars.polls ?? 0) + 1;
  if (res.statusCode >= 500) events.emit('counter', 'cell0.errors', 1);
  return done();
}

/** Loop condition of the poll: until the job is finished (or 300 polls, 60 s at 200 ms: `think: 200ms`). */
export function jobPending(context, next) {
  const state = context.vars.jobState;
  const pending = state !== 'completed' && state !== 'failed' && (context.vars.polls ?? 0) < 300;
  return next(pending);
}

/** After the poll loop: the job's end-to-end time, as the caller saw it. */
export function recordPollDone(context, events, done) {
  if (context.vars.jobState === 'completed' && typeof context.vars.pollStartedAt === 'number') {
    events.emit('histogram', 'cell0.latency.poll_e2e', Date.now() - context.vars.pollStartedAt);
  } else {
    events.emit('counter', 'cell0.errors', 1);
  }
  return done();
}

/** Closed-loop users (Benchmark): keep going until the VU's deadline. */
export function beforeDeadline(context, next) {
  const deadline = context.vars.deadline ?? 0;
  return next(Date.now() < deadline);
}

/** Sets the VU's deadline from the scenario variable `loopSeconds`. */
export function setDeadline(context, _events, done) {
  context.vars.deadline = Date.now() + Number(context.vars.loopSeconds ?? 60) * 1000;
  return done();
}
