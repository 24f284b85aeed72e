import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { parse } from 'yaml';
import {
  checkCompose,
  luaFolders,
  parseCommandList,
  parseDuration,
  parseOptionList,
  readCliCommands,
  cliHelpFromProcess,
  type CliCommands,
} from '../helpers/compose-check';
import { LUA_DIR } from '../../shared/redis/lua-scripts';

/*
 * docker-compose.yml and the Dockerfile can't be run here (no Docker engine), so they are checked against
 * what cell0 really accepts: its CLI (from `cell0 --help`), its variables (ENV) and loadConfig().
 */

const ROOT = join(__dirname, '..', '..');
const composeText = readFileSync(join(ROOT, 'docker-compose.yml'), 'utf8');
const dockerfileText = readFileSync(join(ROOT, 'Dockerfile'), 'utf8');

type Doc = Record<string, unknown>;
type Service = Record<string, unknown>;

/** A fresh deep copy of the compose file with merge keys resolved and no shared (aliased) objects. */
function composeDoc(): Doc {
  return JSON.parse(JSON.stringify(parse(composeText, { merge: true }))) as Doc;
}

function service(doc: Doc, name: string): Service {
  const s = (doc.services as Record<string, Service | undefined>)[name];
  if (!s) throw new Error(`docker-compose.yml has no service ${name}`);
  return s;
}

function env(doc: Doc, name: string): Record<string, unknown> {
  return service(doc, name).environment as Record<string, unknown>;
}

let cli: CliCommands;

beforeAll(() => {
  cli = readCliCommands();
});

describe('the cell0 CLI as seen from its --help', () => {
  test('lists the commands the compose file uses, with their options', () => {
    expect([...cli.keys()]).toEqual(expect.arrayContaining(['api', 'worker', 'dashboard', 'simulator']));
    expect(cli.has('help')).toBe(false);
    expect([...(cli.get('worker') ?? [])]).toEqual(
      expect.arrayContaining(['--queues', '-q', '--concurrency', '-c']),
    );
  });

  test('the real entry point prints the same commands', async () => {
    expect(parseCommandList(await cliHelpFromProcess())).toEqual([...cli.keys()]);
  }, 150_000);

  test('help parsing ignores wrapped description lines', () => {
    const help = [
      'Usage: x [options] [command]',
      '',
      'Options:',
      '  -V, --version        output the version number',
      '  --host <host>        address to listen on, see',
      '                       --not-an-option in the text',
      '',
      'Commands:',
      '  api [options]        The HTTP API: POST /v1/inference, POST',
      '                       /v1/search',
      '  help [command]       display help for command',
    ].join('\n');
    expect(parseCommandList(help)).toEqual(['api']);
    expect([...parseOptionList(help)]).toEqual(['-V', '--version', '--host']);
  });
});

test('compose durations are read like Docker reads them', () => {
  expect(parseDuration('40s')).toBe(40_000);
  expect(parseDuration('1m30s')).toBe(90_000);
  expect(parseDuration('1.5h')).toBe(5_400_000);
  expect(parseDuration('250ms')).toBe(250);
  expect(parseDuration('40')).toBeUndefined();
  expect(parseDuration('forty seconds')).toBeUndefined();
});

test('docker-compose.yml and the Dockerfile have no problems', () => {
  expect(checkCompose(parse(composeText, { merge: true }), cli, dockerfileText)).toEqual([]);
});

test('docker-compose.yml has prometheus and grafana under the "observability" profile only', () => {
  const services = composeDoc().services as Record<string, Service & { profiles?: string[] }>;
  expect(services.prometheus?.profiles).toEqual(['observability']);
  expect(services.grafana?.profiles).toEqual(['observability']);
  // The default stack (no profile) keeps only cell0's own services and Redis.
  const defaults = Object.entries(services).filter(([, s]) => !s.profiles);
  expect(defaults.map(([n]) => n).sort()).toEqual(
    ['api', 'dashboard', 'redis', 'simulator', 'worker-1', 'worker-2'].sort(),
  );
});

test('docker-compose.yml runs redis, simulator, api, dashboard and at least two workers', () => {
  const services = composeDoc().services as Record<string, Service>;
  const workers = Object.values(services).filter(
    (s) => Array.isArray(s.command) && s.command[0] === 'worker',
  );
  expect(Object.keys(services)).toEqual(expect.arrayContaining(['redis', 'simulator', 'api', 'dashboard']));
  expect(workers.length).toBeGreaterThanOrEqual(2);
});

/** Each broken variant must be reported, with a message that names what is wrong. */
const composeBreakages: [string, (doc: Doc) => void, RegExp][] = [
  [
    'an unknown command',
    (d) => void (service(d, 'worker-1').command = ['wurker']),
    /worker-1\.command: "wurker" is not a cell0 command/,
  ],
  [
    'an unknown option',
    (d) => void (service(d, 'worker-2').command = ['worker', '--queuez', 'search']),
    /worker-2\.command: `cell0 worker` has no option --queuez/,
  ],
  [
    'an undeclared variable',
    (d) => void (env(d, 'api').CELL0_PROT = '3000'),
    /api\.environment: CELL0_PROT is not a cell0 variable/,
  ],
  [
    'a value loadConfig rejects',
    (d) => void (env(d, 'api').CELL0_PORT = 'http'),
    /services\.api: the environment fails loadConfig.*CELL0_PORT/s,
  ],
  [
    'a bad default in an interpolation',
    (d) => void (env(d, 'dashboard').CELL0_DASHBOARD_WRITE = '${CELL0_DASHBOARD_WRITE:-maybe}'),
    /dashboard: the environment fails loadConfig.*CELL0_DASHBOARD_WRITE/s,
  ],
  [
    'an interpolation without a default',
    (d) => void (env(d, 'api').CELL0_API_KEYS = '${CELL0_API_KEYS}'),
    /\$\{CELL0_API_KEYS\} has no default/,
  ],
  [
    'Redis 6',
    (d) => void (service(d, 'redis').image = 'redis:6.2-alpine'),
    /redis\.image: expected Redis 7 or later/,
  ],
  [
    'not Redis',
    (d) => void (service(d, 'redis').image = 'valkey/valkey:8'),
    /redis\.image: expected redis:<version>/,
  ],
  [
    'an evicting Redis',
    (d) =>
      void (service(d, 'redis').command = [
        'redis-server',
        '--appendonly',
        'yes',
        '--maxmemory-policy',
        'allkeys-lru',
      ]),
    /redis\.command: missing --maxmemory-policy noeviction/,
  ],
  [
    'Redis without AOF',
    (d) => void (service(d, 'redis').command = 'redis-server --maxmemory-policy noeviction'),
    /redis\.command: missing --appendonly yes/,
  ],
  [
    'Redis without a healthcheck',
    (d) => void delete service(d, 'redis').healthcheck,
    /redis: no healthcheck/,
  ],
  [
    'Redis published on every interface',
    (d) => void (service(d, 'redis').ports = ['6379:6379']),
    /redis\.ports: 6379 is published on every interface/,
  ],
  [
    'Redis data in an undeclared volume',
    (d) => void delete d.volumes,
    /redis\.volumes: expected a named volume/,
  ],
  [
    'a wrong simulator port',
    (d) => void (env(d, 'worker-2').CELL0_OLLAMA_URL = 'http://simulator:11434'),
    /worker-2: CELL0_OLLAMA_URL port is 11434, but simulator listens on 11435/,
  ],
  [
    'a wrong simulator host',
    (d) => void (env(d, 'worker-1').CELL0_OLLAMA_URL = 'http://localhost:11435'),
    /worker-1: CELL0_OLLAMA_URL host is "localhost"/,
  ],
  [
    'no CELL0_OLLAMA_URL',
    (d) => void delete env(d, 'worker-1').CELL0_OLLAMA_URL,
    /worker-1: CELL0_OLLAMA_URL is unset/,
  ],
  [
    'Redis on localhost',
    (d) => void (env(d, 'api').REDIS_URL = 'redis://localhost:6379'),
    /services\.api: Redis is localhost:6379/,
  ],
  [
    'Redis on the wrong port',
    (d) => void (env(d, 'dashboard').REDIS_URL = 'redis://redis:6380'),
    /services\.dashboard: Redis is redis:6380/,
  ],
  [
    'no REDIS_URL on a worker',
    (d) => void delete env(d, 'worker-2').REDIS_URL,
    /services\.worker-2: Redis is localhost:6379/,
  ],
  [
    'a grace period shorter than the shutdown timeout',
    (d) => void (service(d, 'worker-1').stop_grace_period = '30s'),
    /worker-1\.stop_grace_period: 30s = 30000 ms must exceed/,
  ],
  [
    'no grace period',
    (d) => void delete service(d, 'worker-2').stop_grace_period,
    /worker-2\.stop_grace_period: unset \(compose default 10s\)/,
  ],
  [
    'a longer shutdown timeout',
    (d) => void (env(d, 'worker-2').CELL0_SHUTDOWN_TIMEOUT_MS = '60000'),
    /worker-2\.stop_grace_period: 40s = 40000 ms must exceed CELL0_SHUTDOWN_TIMEOUT_MS \(60000 ms\)/,
  ],
  [
    'an unreadable grace period',
    (d) => void (service(d, 'worker-1').stop_grace_period = 'forty'),
    /worker-1\.stop_grace_period: cannot read "forty"/,
  ],
  [
    'not waiting for a healthy Redis',
    (d) => void (service(d, 'dashboard').depends_on = { redis: { condition: 'service_started' } }),
    /dashboard\.depends_on: expected redis with condition service_healthy, got service_started/,
  ],
  [
    'no depends_on',
    (d) => void delete service(d, 'api').depends_on,
    /api\.depends_on: expected redis with condition service_healthy, got none/,
  ],
  [
    'a worker not depending on the simulator',
    (d) => void (service(d, 'worker-1').depends_on = { redis: { condition: 'service_healthy' } }),
    /worker-1\.depends_on: should include simulator/,
  ],
  [
    'the short depends_on form',
    (d) => void (service(d, 'worker-2').depends_on = ['redis', 'simulator']),
    /worker-2\.depends_on: expected redis with condition service_healthy, got service_started/,
  ],
  [
    'the API port not published',
    (d) => void (env(d, 'api').CELL0_PORT = '8080'),
    /api\.ports: listens on 8080 but publishes 3000:3000/,
  ],
  [
    'the dashboard port not published',
    (d) => void (service(d, 'dashboard').ports = ['3000:3000']),
    /dashboard\.ports: listens on 3001 but publishes 3000:3000/,
  ],
  [
    'the API on loopback',
    (d) => void (env(d, 'api').CELL0_HOST = '127.0.0.1'),
    /services\.api: listens on 127\.0\.0\.1 \(CELL0_HOST\)/,
  ],
  [
    'the simulator on loopback',
    (d) => void (service(d, 'simulator').command = ['simulator', '--host', '127.0.0.1']),
    /services\.simulator: listens on 127\.0\.0\.1 \(CELL0_SIM_HOST\)/,
  ],
  [
    'a healthcheck on the wrong port',
    (d) => {
      env(d, 'dashboard').CELL0_DASHBOARD_PORT = '3002';
      service(d, 'dashboard').ports = ['3002:3002'];
    },
    /dashboard\.healthcheck: probes port 3001, but the service listens on 3002/,
  ],
  [
    'a single worker',
    (d) => void delete (d.services as Record<string, unknown>)['worker-2'],
    /expected at least two worker services .*found 1/,
  ],
  [
    'no simulator',
    (d) => void delete (d.services as Record<string, unknown>).simulator,
    /services\.simulator: missing/,
  ],
  [
    'another build context',
    (d) => void (service(d, 'api').build = './producers'),
    /api\.build: expected the repository root/,
  ],
  [
    'a foreign image',
    (d) => void Object.assign(service(d, 'api'), { build: undefined, image: 'node:24' }),
    /api: neither builds from \. nor uses the image/,
  ],
  ['no command', (d) => void delete service(d, 'dashboard').command, /dashboard\.command: missing/],
  [
    'a cluster node in the default stack (no profile)',
    (d) => void delete service(d, 'redis-node-2').profiles,
    /services\.redis-node-2\.profiles: expected \["cluster"\]/,
  ],
  [
    'a cluster node without noeviction',
    (d) => void (service(d, 'redis-node-3').command = ['redis-server', '--cluster-enabled', 'yes']),
    /services\.redis-node-3\.command: expected --maxmemory-policy noeviction/,
  ],
  [
    'a cluster service that leaves a node out',
    (d) => void (env(d, 'api-cluster').REDIS_CLUSTER_NODES = 'redis-node-1:6379,redis-node-2:6379'),
    /services\.api-cluster: REDIS_CLUSTER_NODES leaves out redis-node-3/,
  ],
  [
    'a cluster service that does not wait for the cluster',
    (d) => void delete service(d, 'worker-cluster').depends_on,
    /services\.worker-cluster\.depends_on: expected redis-cluster-init with condition service_completed_successfully/,
  ],
  [
    'an init service that does not join every node',
    (d) =>
      void (service(d, 'redis-cluster-init').command = [
        'sh',
        '-c',
        'redis-cli --cluster create redis-node-1:6379 redis-node-2:6379 --cluster-replicas 0 --cluster-yes',
      ]),
    /services\.redis-cluster-init\.command: does not join redis-node-3/,
  ],
  [
    'prometheus in the default stack (no profile)',
    (d) => void delete service(d, 'prometheus').profiles,
    /services\.prometheus\.profiles: expected \["observability"\]/,
  ],
  [
    'a mounted file that does not exist',
    (d) =>
      void (service(d, 'grafana').volumes = [
        './dashboards/grafana/nope.json:/var/lib/grafana/dashboards/cell0-fleet.json:ro',
      ]),
    /services\.grafana\.volumes: \.\/dashboards\/grafana\/nope\.json does not exist/,
  ],
  [
    'a worker whose metrics listener is on loopback',
    (d) => void (env(d, 'worker-2').CELL0_HOST = '127.0.0.1'),
    /services\.worker-2: serves metrics on 127\.0\.0\.1 \(CELL0_HOST\)/,
  ],
  [
    'a worker on another metrics port than Prometheus scrapes',
    (d) => void (env(d, 'worker-1').CELL0_METRICS_PORT = '9500'),
    /prometheus\.yml: does not scrape worker-1:9500/,
  ],
  [
    'no Grafana dashboard provisioning',
    (d) =>
      void (service(d, 'grafana').volumes = (service(d, 'grafana').volumes as string[]).filter(
        (v) => !v.includes('provisioning/dashboards'),
      )),
    /services\.grafana\.volumes: nothing mounted at \/etc\/grafana\/provisioning\/dashboards/,
  ],
];

describe('checkCompose reports a broken compose file', () => {
  test.each(composeBreakages)('%s', (_name, breakIt, expected) => {
    const doc = composeDoc();
    breakIt(doc);
    const problems = checkCompose(doc, cli, dockerfileText);
    expect(problems).toEqual(expect.arrayContaining([expect.stringMatching(expected)]));
  });
});

const dockerfileBreakages: [string, (text: string) => string, RegExp][] = [
  ['running as root', (t) => t.replace(/^USER node$/m, 'USER root'), /non-root USER, got root/],
  ['no USER', (t) => t.replace(/^USER node$/m, ''), /non-root USER, got none/],
  ['data not copied', (t) => t.replace(/^COPY data .*$/m, ''), /does not COPY data /],
  [
    'the build stage without the Lua scripts',
    (t) => t.replace(/^COPY shared \.\/shared$/m, 'COPY shared/config ./shared/config'),
    /build stage .*does not COPY shared\/lua before npm run build/,
  ],
  ['no build', (t) => t.replace(/^RUN npm run build$/m, ''), /no stage runs npm run build/],
  ['dist not copied', (t) => t.replace(/^COPY --from=build .*dist.*$/m, ''), /does not COPY dist/],
  [
    'another entry point',
    (t) => t.replace(/^ENTRYPOINT .*$/m, 'ENTRYPOINT ["node", "dist/index.js"]'),
    /ENTRYPOINT must run dist\/bin\/cell0\.js/,
  ],
  [
    'an unknown default command',
    (t) => t.replace(/^CMD .*$/m, 'CMD ["strat"]'),
    /default command "strat" is not a cell0 command/,
  ],
  [
    'an undeclared ENV',
    (t) => t.replace(/^ENV CELL0_HOST=/m, 'ENV CELL0_HOTS='),
    /Dockerfile: ENV CELL0_HOTS is not a cell0 variable/,
  ],
  ['a single stage', (t) => t.slice(t.indexOf('FROM ${NODE_IMAGE} AS runtime')), /multi-stage build/],
];

describe('checkCompose reports a broken Dockerfile', () => {
  test.each(dockerfileBreakages)('%s', (_name, breakIt, expected) => {
    const broken = breakIt(dockerfileText);
    expect(broken).not.toBe(dockerfileText); // the edit found its target
    const problems = checkCompose(parse(composeText, { merge: true }), cli, broken);
    expect(problems).toEqual(expect.arrayContaining([expect.stringMatching(expected)]));
  });

  test('the listen addresses the image sets count for the services', () => {
    // Without the compose file's CELL0_HOST the API still listens on 0.0.0.0 thanks to the image's ENV…
    const doc = composeDoc();
    delete env(doc, 'api').CELL0_HOST;
    expect(checkCompose(doc, cli, dockerfileText)).toEqual([]);
    // …and on 127.0.0.1 (loadConfig's default) without either.
    const noEnv = dockerfileText.replace(/^ENV CELL0_HOST=.*$/m, '');
    expect(checkCompose(doc, cli, noEnv)).toEqual(
      expect.arrayContaining([expect.stringMatching(/services\.api: listens on 127\.0\.0\.1/)]),
    );
  });
});

describe('the Lua scripts', () => {
  it('all live in shared/lua, the folder the loader reads and the build copies into dist/ (shipped with it)', () => {
    const pkg = JSON.parse(readFileSync(join(ROOT, 'package.json'), 'utf8')) as {
      files: string[];
      scripts: Record<string, string>;
    };
    expect(luaFolders()).toEqual(['shared/lua', 'shared/lua/includes']);
    expect(LUA_DIR).toBe(join(ROOT, 'shared', 'lua'));
    expect(pkg.scripts.build).toContain("cpSync('shared/lua', 'dist/shared/lua'");
    expect(pkg.files).toContain('dist');
  });
});
