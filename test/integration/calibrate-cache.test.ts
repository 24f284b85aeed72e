import { createServer } from 'node:http';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { LexicalEmbedder } from '../../shared/cache/semantic';
import { calibrate, scorePairs } from '../../shared/cache/semantic/calibration';
import { readEvalFile } from '../../bin/eval-cache';
import { spawnCell0, type Cell0Process } from '../helpers/cli';
import { listenLocal } from '../helpers/listen';

interface Report {
  embedder: string;
  pairs: number;
  guard: boolean;
  env: string;
  thresholds: { high: number; medium: number; low: number };
  high: { reached: boolean; target: number; stats: { precision: number | null; tp: number; fp: number } };
  refusals: { rule: string; positives: number; positivesAboveHigh: number; negatives: number }[];
}

// Paraphrases, and the hard negatives the guard must refuse (order, negation, numbers, entities).
const PAIRS = [
  '# kind: positive',
  '1\tHow do I fix a wobbly table leg?\tWhat is the way to repair a wobbly table leg?',
  '1\tHow many calories are in a banana?\tWhat is the number of calories in a banana?',
  '1\tWho invented the telephone?\tBy whom was the telephone invented?',
  "1\tWhy doesn't the cork come out in one piece?\tWhy does the cork not come out in one piece?",
  '1\tCould you please explain how a bee smoker works? Thanks!\tExplain how a bee smoker works.',
  '1\twhat causes gum recesion\tWhat causes gum recession?',
  '1\tWhere can I buy cheap flights to Lisbon?\tWhere can I purchase inexpensive flights to Lisbon?',
  '1\tHow often should I water basil?\tHow frequently should I water basil?',
  '# kind: negative',
  '0\tFlights from Paris to Rome\tFlights from Rome to Paris',
  '0\tIs ibuprofen safe during pregnancy?\tIs ibuprofen not safe during pregnancy?',
  '0\tHow many stitches for a 60 cm hat?\tHow many stitches for a 50 cm hat?',
  '0\tHow many symphonies did Haydn write?\tHow many symphonies did Mozart write?',
  '0\tHow do I finish walnut with Danish oil?\tHow do I finish maple with Danish oil?',
  '0\tHow do I bake banana bread?\tWho won the World Cup in 2014?',
].join('\n');

// Each test starts up to three CLI processes (tsx start-up and the lexicon: about 1 s of CPU each, measured);
// on a loaded 2-core host that is tens of seconds of wall time, so the tests take the suite's hang deadline
// (testTimeout in jest.config.js), not a tighter one of their own.
describe('cell0 calibrate-cache', () => {
  let dir: string;
  let proc: Cell0Process | undefined;
  const run = (args: string[], env: Record<string, string> = {}) => {
    proc = spawnCell0(['calibrate-cache', ...args], { CELL0_LOG_LEVEL: 'warn', ...env });
    return proc;
  };

  beforeEach(() => {
    dir = mkdtempSync(join(tmpdir(), 'cell0-calibrate-'));
    writeFileSync(join(dir, 'pairs.tsv'), PAIRS);
  });
  afterEach(() => {
    proc?.kill('SIGKILL');
    rmSync(dir, { recursive: true, force: true });
  });

  it('prints thresholds that hold the precision for the built-in embedder, without Redis', async () => {
    // No REDIS_URL and nothing listening on the default: the command must not need one.
    const p = run([join(dir, 'pairs.tsv'), '--json'], { REDIS_URL: 'redis://127.0.0.1:1' });
    expect(await p.exited).toBe(0);
    const r = JSON.parse(p.stdout()) as Report;
    expect(r).toMatchObject({ embedder: new LexicalEmbedder().name, pairs: 14, guard: true });
    expect(r.high).toMatchObject({ reached: true, target: 0.98, stats: { precision: 1, fp: 0 } });
    expect(r.high.stats.tp).toBe(8);
    const t = r.thresholds;
    expect(t.high).toBeGreaterThanOrEqual(t.medium);
    expect(t.medium).toBeGreaterThanOrEqual(t.low);
    expect(r.env).toBe(`${t.high},${t.medium},${t.low}`);
    // the guard catches by rule: the reversal, the negation, the numbers (the easy pair has 2014 in one
    // prompt), the names, the swapped word
    const caught = Object.fromEntries(r.refusals.map((x) => [x.rule, x.negatives]));
    expect(caught).toMatchObject({ order: 1, negation: 1, number: 2, entity: 1, substitution: 1 }); // 2014 too
    expect(r.refusals.reduce((n, x) => n + x.positives, 0)).toBe(0);

    const text = run([join(dir, 'pairs.tsv')]);
    expect(await text.exited).toBe(0);
    expect(text.stdout()).toContain(`CELL0_SEMANTIC_THRESHOLDS=${r.env}\n`);
    expect(text.stdout()).toMatch(/^high +>= \d\.\d{4} +target 0\.980 +precision 1\.000/m);
  });

  it('calibrates an ollama: embedder through /api/embed, learning its vector length from the model', async () => {
    // A fake Ollama whose vectors are the lexical embedder's: calibrating it must give the same cut-offs
    // (they are chosen on cosines and the guard, which do not depend on where the vectors come from).
    const local = new LexicalEmbedder();
    const requests: { model: string; inputs: number }[] = [];
    const server = createServer((req, res) => {
      let body = '';
      req.on('data', (c: Buffer) => (body += c.toString()));
      req.on('end', () => {
        if (req.method !== 'POST' || req.url !== '/api/embed') {
          res.writeHead(404, { 'content-type': 'application/json' }).end('{"error":"not found"}');
          return;
        }
        const { model, input } = JSON.parse(body) as { model: string; input: string | string[] };
        const texts = Array.isArray(input) ? input : [input];
        requests.push({ model, inputs: texts.length });
        const embeddings = texts.map((t) => Array.from(local.embedOne(t)));
        res.writeHead(200, { 'content-type': 'application/json' }).end(JSON.stringify({ model, embeddings }));
      });
    });
    const fake = await listenLocal(server);
    try {
      // The built-in embedder's cut-offs on the same pairs, computed here (the command's own run of it is
      // the test above; one CLI process fewer on a loaded host).
      const pairs = readEvalFile(join(dir, 'pairs.tsv'), 'calibrate-cache')!;
      const expected = calibrate(await scorePairs(pairs, local, { guard: true }), {
        precision: 0.98,
      }).thresholds;

      const p = run([join(dir, 'pairs.tsv'), '--json', '--embedder', 'ollama:fake-embed'], {
        CELL0_OLLAMA_URL: fake.url,
      });
      expect(await p.exited).toBe(0);
      const r = JSON.parse(p.stdout()) as Report;
      expect(r.embedder).toBe('ollama/fake-embed');
      expect(r.thresholds).toEqual(expected);
      // one probe for the vector length, then the 28 prompts in batches
      expect(requests[0]).toEqual({ model: 'fake-embed', inputs: 1 });
      expect(requests.slice(1).reduce((n, q) => n + q.inputs, 0)).toBe(28);
    } finally {
      await fake.close();
    }
  });

  it('exits 1 when no cut-off holds the precision (an embedder that cannot tell prompts apart)', async () => {
    const server = createServer((req, res) => {
      let body = '';
      req.on('data', (c: Buffer) => (body += c.toString()));
      req.on('end', () => {
        const { input } = JSON.parse(body) as { input: string[] };
        res
          .writeHead(200, { 'content-type': 'application/json' })
          .end(JSON.stringify({ model: 'flat', embeddings: input.map(() => [1, 0, 0, 0]) }));
      });
    });
    const fake = await listenLocal(server);
    try {
      const p = run([join(dir, 'pairs.tsv'), '--embedder', 'ollama:flat', '--no-guard', '--dims', '4'], {
        CELL0_OLLAMA_URL: fake.url,
      });
      expect(await p.exited).toBe(1);
      expect(p.stderr()).toMatch(/no cut-off holds precision 0.98/);
      expect(p.stdout()).toMatch(/NOT reached/);
    } finally {
      await fake.close();
    }
  });

  it('exits 2 on a malformed file, an unknown embedder or a bad precision, naming the problem', async () => {
    writeFileSync(join(dir, 'bad.tsv'), '1\tonly two fields\n');
    const p = run([join(dir, 'bad.tsv')]);
    expect(await p.exited).toBe(2);
    expect(p.stderr()).toMatch(/line 1: expected label<TAB>prompt_a<TAB>prompt_b/);

    const q = run([join(dir, 'pairs.tsv'), '--embedder', 'word2vec']);
    expect(await q.exited).not.toBe(0);
    expect(q.stderr()).toMatch(/expected lexical, hashed, ollama:<model> or openai:<model>/);

    const r = run([join(dir, 'pairs.tsv'), '--precision', '2']);
    expect(await r.exited).not.toBe(0);
    expect(r.stderr()).toMatch(/expected a number in \(0\.5, 1\]/);
  });
});
