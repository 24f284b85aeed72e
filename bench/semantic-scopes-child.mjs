// One side of bench:semantic-scopes: lookups and stores of the semantic cache of the build in DIST, going
// round SCOPES scopes (each filled with ENTRIES first), ROUNDS times. Prints one JSON line.
// usage: node semantic-scopes-child.mjs DIST REDIS_URL PREFIX SCOPES ROUNDS ENTRIES
const [dist, url, prefix] = process.argv.slice(2, 5);
const [nScopes, rounds, entries] = process.argv.slice(5, 8).map(Number);
const { SemanticCache } = await import(`${dist}/shared/cache/semantic/semantic-cache.js`);
const { RedisClient } = await import(`${dist}/shared/redis/redis-client.js`);
const { waitUntilReady } = await import(`${dist}/shared/redis/connection.js`);
const client = new RedisClient({ url, commandTimeoutMs: 10_000, breakerThreshold: 1000 });
await waitUntilReady(client.connection, 10_000);
const cache = new SemanticCache({ redis: client, prefix, ttlSeconds: 3600 });
const scopes = Array.from({ length: nScopes }, (_, i) => ({ model: 'm', tenant: `t${i}` }));
const words =
  'alpha beta gamma delta epsilon zeta theta kappa lambda sigma omega river mountain ocean forest city'.split(
    ' ',
  );
const stored = (s, i) =>
  `Tell me about ${words[i % 16]} ${words[(i * 7) % 16]} number ${i} in scope ${s} and ${(i * 7919) % 10007}`;
for (let s = 0; s < nScopes; s++) {
  const writes = [];
  for (let i = 0; i < entries; i++) writes.push(cache.set(stored(s, i), `a${i}`, scopes[s]));
  await Promise.all(writes);
}
const redisCpu = async () => {
  const info = await client.connection.info('cpu');
  const num = (k) => Number(new RegExp(`${k}:([\\d.]+)`).exec(info)?.[1] ?? NaN);
  return (num('used_cpu_sys') + num('used_cpu_user')) * 1e6;
};
const redis0 = await redisCpu();
const cpu0 = process.cpuUsage();
const t0 = performance.now();
let hits = 0;
let n = 0;
for (let r = 0; r < rounds; r++) {
  for (let s = 0; s < nScopes; s++) {
    if (await cache.get(`What about ${words[r % 16]} thing ${r}-${s} ${n}`, scopes[s])) hits++;
    await cache.set(`What about ${words[r % 16]} thing ${r}-${s} stored`, 'x', scopes[s]);
    n++;
  }
}
const cpu = process.cpuUsage(cpu0);
const wall = performance.now() - t0;
const redisUs = (await redisCpu()) - redis0;
console.log(
  JSON.stringify({
    requests: n,
    hits,
    cpuUs: (cpu.user + cpu.system) / n,
    wallUs: (wall * 1000) / n,
    redisUs: redisUs / n,
  }),
);
await client.close();
process.exit(0);
