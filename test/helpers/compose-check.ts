import { execFile } from 'node:child_process';
import { program } from '../../bin/cell0';
import { readdirSync } from 'node:fs';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { ENV, loadConfig, type Config } from '../../shared/config/config';
import { ConfigError } from '../../shared/errors';
import { checkObservability, OBSERVABILITY_SERVICES, type ScrapeTarget } from './compose-observability';
import { checkCluster, CLUSTER_PROFILE, clusterRedisServices } from './compose-cluster';

/*
 * Checks of docker-compose.yml and the Dockerfile against what cell0 really accepts: its CLI commands and
 * options (read from `cell0 --help`), its environment variables (ENV) and their validation (loadConfig).
 * `checkCompose` is pure so a test can feed it a deliberately broken file and see each check fail.
 */

/** CLI command name → the option flags its `--help` lists (`--queues`, `-q`, ...). */
export type CliCommands = ReadonlyMap<string, ReadonlySet<string>>;

/**
 * Environment variables a service may set although ENV does not declare them, each with the reason.
 * Keep it empty unless something outside cell0 (Node itself, a library) reads the variable.
 */
export const ENV_EXCEPTIONS: Readonly<Record<string, string>> = {};

/** Commands that talk to Redis (everything but the simulator). */
const REDIS_COMMANDS = new Set(['start', 'api', 'worker', 'dashboard']);
/** The name other containers reach Redis and the simulator by: their service names. */
const REDIS_SERVICE = 'redis';
const SIMULATOR_SERVICE = 'simulator';
const REDIS_CONTAINER_PORT = 6379;
/** Addresses that accept connections from other containers and from published ports. */
const ALL_INTERFACES = new Set(['0.0.0.0', '::']);
/** Compose's own default when stop_grace_period is unset. */
const COMPOSE_DEFAULT_GRACE_MS = 10_000;
/**
 * After CELL0_SHUTDOWN_TIMEOUT_MS the worker still aborts what is left, puts those jobs back to wait and
 * closes its connections; give that this long before Docker's SIGKILL.
 */
export const MIN_GRACE_MARGIN_MS = 5_000;

// ---------------------------------------------------------------------------------------------------------
// small parsers

function isRecord(v: unknown): v is Record<string, unknown> {
  return typeof v === 'object' && v !== null && !Array.isArray(v);
}

/** Go/compose duration ("40s", "1m30s", "1.5h", "500ms") in milliseconds; undefined when malformed. */
export function parseDuration(text: string): number | undefined {
  const units: Record<string, number> = {
    h: 3_600_000,
    m: 60_000,
    s: 1000,
    ms: 1,
    us: 0.001,
    µs: 0.001,
    ns: 1e-6,
  };
  const s = text.trim();
  if (s === '' || s === '0') return s === '0' ? 0 : undefined;
  let ms = 0;
  let rest = s;
  while (rest.length > 0) {
    const m = /^(\d+(?:\.\d+)?|\.\d+)(ms|us|µs|ns|h|m|s)/.exec(rest);
    if (!m) return undefined;
    ms += Number(m[1]) * (units[m[2] as string] as number);
    rest = rest.slice(m[0].length);
  }
  return ms;
}

/**
 * Compose interpolation as `docker compose up` does it with none of the variables set on the host:
 * `${VAR:-default}` / `${VAR-default}` give the default, `${VAR:+x}` gives '', `$$` is a literal `$`.
 * `${VAR}`, `$VAR` and `${VAR:?message}` are reported (compose would warn or refuse).
 */
export function interpolate(text: string, where: string, problems: string[]): string {
  return text.replace(
    /\$\$|\$\{([A-Za-z_][A-Za-z0-9_]*)(?:(:?[-?+])([^}]*))?\}|\$([A-Za-z_][A-Za-z0-9_]*)|\$\{[^}]*\}?/g,
    (
      whole,
      braced: string | undefined,
      op: string | undefined,
      arg: string | undefined,
      bare: string | undefined,
    ) => {
      if (whole === '$$') return '$';
      const name = braced ?? bare;
      if (name === undefined) {
        problems.push(`${where}: malformed interpolation ${whole}`);
        return '';
      }
      if (op === ':-' || op === '-') return arg ?? '';
      if (op === ':+' || op === '+') return '';
      if (op === ':?' || op === '?') {
        problems.push(
          `${where}: ${whole} makes \`docker compose up\` fail unless ${name} is set on the host`,
        );
        return '';
      }
      problems.push(
        `${where}: ${whole} has no default; write \${${name}:-} (or a real default) so an unset host variable is intended`,
      );
      return '';
    },
  );
}

/** Every string in a parsed YAML document interpolated (keys are left alone, as compose does). */
function interpolateAll(value: unknown, where: string, problems: string[]): unknown {
  if (typeof value === 'string') return interpolate(value, where, problems);
  if (Array.isArray(value)) return value.map((v, i) => interpolateAll(v, `${where}[${i}]`, problems));
  if (isRecord(value)) {
    return Object.fromEntries(
      Object.entries(value).map(([k, v]) => [k, interpolateAll(v, `${where}.${k}`, problems)]),
    );
  }
  return value;
}

/** A compose `command` (list, or string split on blanks as compose does for simple strings) as a list. */
function commandOf(service: Record<string, unknown>): string[] | undefined {
  const c = service.command;
  if (typeof c === 'string') return c.trim().split(/\s+/).filter(Boolean);
  if (Array.isArray(c)) return c.map((x) => String(x));
  return undefined;
}

/**
 * A service's `environment` as name → value; null = listed without a value (passed through from the
 * host). Both the map and the list ("NAME=value") forms.
 */
function environmentOf(
  service: Record<string, unknown>,
  where: string,
  problems: string[],
): Map<string, string | null> {
  const out = new Map<string, string | null>();
  const e = service.environment;
  if (e === undefined || e === null) return out;
  if (Array.isArray(e)) {
    for (const item of e) {
      const s = String(item);
      const eq = s.indexOf('=');
      out.set(eq < 0 ? s : s.slice(0, eq), eq < 0 ? null : s.slice(eq + 1));
    }
  } else if (isRecord(e)) {
    for (const [k, v] of Object.entries(e)) {
      if (v === null || v === undefined) out.set(k, null);
      else if (typeof v === 'string' || typeof v === 'number' || typeof v === 'boolean')
        out.set(k, String(v));
      else
        problems.push(
          `${where}.environment.${k}: expected a string, number or boolean, got ${JSON.stringify(v)}`,
        );
    }
  } else {
    problems.push(`${where}.environment: expected a map or a list`);
  }
  return out;
}

/** The value of `--long`/`-s` in an argument list (`--port 3000` or `--port=3000`). */
function optionValue(args: readonly string[], names: readonly string[]): string | undefined {
  for (let i = 0; i < args.length; i++) {
    const a = args[i] as string;
    for (const n of names) {
      if (a === n) return args[i + 1];
      if (a.startsWith(`${n}=`)) return a.slice(n.length + 1);
    }
  }
  return undefined;
}

interface PortMapping {
  hostIp?: string;
  published?: string;
  target: number;
}

/** Short ("[ip:][published:]target[/proto]") and long ({target, published, host_ip}) port syntax. */
function portsOf(service: Record<string, unknown>, where: string, problems: string[]): PortMapping[] {
  const out: PortMapping[] = [];
  const ports = service.ports;
  if (ports === undefined) return out;
  if (!Array.isArray(ports)) {
    problems.push(`${where}.ports: expected a list`);
    return out;
  }
  for (const p of ports) {
    if (isRecord(p)) {
      const target = Number(p.target);
      if (!Number.isInteger(target))
        problems.push(`${where}.ports: ${JSON.stringify(p)} has no numeric target`);
      else
        out.push({
          target,
          ...(p.published !== undefined ? { published: String(p.published) } : {}),
          ...(typeof p.host_ip === 'string' ? { hostIp: p.host_ip } : {}),
        });
      continue;
    }
    const spec = String(p).replace(/\/(tcp|udp|sctp)$/, '');
    const m = /^(?:(\[[^\]]+\]|[^:]+):)?(?:([^:]*):)?(\d+)$/.exec(spec);
    if (!m) {
      problems.push(`${where}.ports: cannot read ${JSON.stringify(p)}`);
      continue;
    }
    // "a:b" is published:target; "ip:a:b" has all three.
    const [, first, second, target] = m;
    const hostIp = second !== undefined ? first : undefined;
    const published = second !== undefined ? second : first;
    out.push({
      target: Number(target),
      ...(published ? { published } : {}),
      ...(hostIp ? { hostIp: hostIp.replace(/^\[|\]$/g, '') } : {}),
    });
  }
  return out;
}

/** depends_on as service → condition (short list form = service_started). */
function dependsOn(service: Record<string, unknown>): Map<string, string> {
  const out = new Map<string, string>();
  const d = service.depends_on;
  if (Array.isArray(d)) for (const name of d) out.set(String(name), 'service_started');
  else if (isRecord(d)) {
    for (const [name, spec] of Object.entries(d)) {
      out.set(
        name,
        isRecord(spec) && typeof spec.condition === 'string' ? spec.condition : 'service_started',
      );
    }
  }
  return out;
}

/** The healthcheck's command as one string ('' when there is none or it is disabled). */
function healthcheckText(service: Record<string, unknown>): string {
  const h = service.healthcheck;
  if (!isRecord(h) || h.disable === true) return '';
  if (Array.isArray(h.test)) return h.test[0] === 'NONE' ? '' : h.test.map(String).join(' ');
  return typeof h.test === 'string' ? h.test : '';
}

// ---------------------------------------------------------------------------------------------------------
// Dockerfile

interface Instruction {
  op: string;
  args: string;
  line: number;
}

interface Stage {
  from: string;
  name?: string;
  instructions: Instruction[];
}

/** Splits a Dockerfile into stages of instructions (continuation lines joined, comments dropped). */
export function parseDockerfile(text: string): { stages: Stage[]; preamble: Instruction[] } {
  const instructions: Instruction[] = [];
  let buf = '';
  let start = 0;
  text.split(/\r?\n/).forEach((raw, i) => {
    const line = raw.trim();
    if (buf === '' && (line === '' || line.startsWith('#'))) return;
    if (buf !== '' && line.startsWith('#')) return;
    if (buf === '') start = i + 1;
    if (line.endsWith('\\')) {
      buf += line.slice(0, -1) + ' ';
      return;
    }
    buf += line;
    const m = /^(\S+)\s*(.*)$/s.exec(buf);
    if (m)
      instructions.push({ op: (m[1] as string).toUpperCase(), args: (m[2] as string).trim(), line: start });
    buf = '';
  });
  const stages: Stage[] = [];
  const preamble: Instruction[] = [];
  for (const ins of instructions) {
    if (ins.op === 'FROM') {
      const m = /^(?:--\S+\s+)*(\S+)(?:\s+AS\s+(\S+))?/i.exec(ins.args);
      stages.push({ from: m?.[1] ?? ins.args, ...(m?.[2] ? { name: m[2] } : {}), instructions: [] });
    } else if (stages.length === 0) preamble.push(ins);
    else (stages[stages.length - 1] as Stage).instructions.push(ins);
  }
  return { stages, preamble };
}

/** Exec form (JSON array) or shell form of CMD/ENTRYPOINT as a list of words. */
function execForm(args: string): string[] {
  if (args.startsWith('[')) {
    try {
      const v: unknown = JSON.parse(args);
      if (Array.isArray(v)) return v.map(String);
    } catch {
      // fall through to the shell form
    }
  }
  return args.split(/\s+/).filter(Boolean);
}

/** `ENV A=1 B=2` and the legacy `ENV A 1` form. */
function envInstruction(args: string): [string, string][] {
  if (!/^[A-Za-z_][A-Za-z0-9_]*=/.test(args)) {
    const m = /^(\S+)\s+(.*)$/.exec(args);
    return m ? [[m[1] as string, m[2] as string]] : [];
  }
  const out: [string, string][] = [];
  const re = /([A-Za-z_][A-Za-z0-9_]*)=("(?:[^"\\]|\\.)*"|'[^']*'|\S*)/g;
  for (let m = re.exec(args); m; m = re.exec(args)) {
    const v = m[2] as string;
    out.push([m[1] as string, /^["']/.test(v) ? v.slice(1, -1) : v]);
  }
  return out;
}

interface DockerfileFacts {
  /** ENV of the runtime (last) stage, in order. */
  env: Map<string, string>;
  /** ENTRYPOINT + CMD of the runtime stage. */
  entrypoint: string[];
  cmd: string[];
}

/**
 * Every folder under shared/ that holds Lua scripts. They must all be under shared/lua: the one folder the
 * script loader reads and the build copies into dist/ (so the image and the package get them with dist/).
 */
export function luaFolders(): string[] {
  const root = join(__dirname, '..', '..');
  const found = new Set<string>();
  const walk = (dir: string): void => {
    for (const e of readdirSync(join(root, dir), { withFileTypes: true })) {
      if (e.isDirectory()) walk(`${dir}/${e.name}`);
      else if (e.name.endsWith('.lua')) found.add(dir);
    }
  };
  walk('shared');
  return [...found].sort();
}

/** The stage that runs `npm run build` must have the Lua scripts by then: the build copies them to dist/. */
function checkBuildStage(stages: Stage[], problems: string[]): void {
  for (const stage of stages) {
    const build = stage.instructions.findIndex((i) => i.op === 'RUN' && /\bnpm run build\b/.test(i.args));
    if (build < 0) continue;
    const sources = stage.instructions
      .slice(0, build)
      .filter((i) => i.op === 'COPY' || i.op === 'ADD')
      .flatMap((c) =>
        execForm(c.args)
          .filter((w) => !w.startsWith('--'))
          .slice(0, -1)
          .map((w) => w.replace(/^\.\//, '').replace(/\/+$/, '')),
      );
    const has = (dir: string) => sources.some((s) => s === '.' || s === dir || dir.startsWith(`${s}/`));
    for (const dir of luaFolders())
      if (!has(dir))
        problems.push(
          `Dockerfile build stage (FROM ${stage.from}): does not COPY ${dir} before npm run build (the build copies the Lua scripts into dist)`,
        );
    return;
  }
  problems.push('Dockerfile: no stage runs npm run build');
}

function checkDockerfile(text: string, cli: CliCommands, problems: string[]): DockerfileFacts {
  const facts: DockerfileFacts = { env: new Map(), entrypoint: [], cmd: [] };
  const { stages } = parseDockerfile(text);
  const runtime = stages[stages.length - 1];
  if (!runtime) {
    problems.push('Dockerfile: no FROM instruction');
    return facts;
  }
  if (stages.length < 2)
    problems.push('Dockerfile: expected a multi-stage build (a build stage and a runtime stage)');
  const where = `Dockerfile runtime stage (FROM ${runtime.from}${runtime.name ? ` AS ${runtime.name}` : ''})`;
  const last = (op: string) => runtime.instructions.filter((i) => i.op === op).at(-1);

  const entry = last('ENTRYPOINT');
  facts.entrypoint = entry ? execForm(entry.args) : [];
  const cmd = last('CMD');
  facts.cmd = cmd ? execForm(cmd.args) : [];
  const argv = [...facts.entrypoint, ...facts.cmd];
  const script = argv.findIndex((a) => /(^|\/)dist\/bin\/cell0\.js$/.test(a));
  if (!entry || !facts.entrypoint.some((a) => /(^|\/)dist\/bin\/cell0\.js$/.test(a)))
    problems.push(`${where}: ENTRYPOINT must run dist/bin/cell0.js, got ${entry ? entry.args : 'none'}`);
  else if (facts.entrypoint[0] !== 'node')
    problems.push(`${where}: ENTRYPOINT should start with node, got ${entry.args}`);
  const defaultCommand = script >= 0 ? argv[script + 1] : undefined;
  if (defaultCommand !== undefined && !cli.has(defaultCommand))
    problems.push(
      `${where}: default command ${JSON.stringify(defaultCommand)} is not a cell0 command (${[...cli.keys()].join(', ')})`,
    );

  const copies = runtime.instructions.filter((i) => i.op === 'COPY' || i.op === 'ADD');
  const sources = copies.flatMap((c) => {
    const words = execForm(c.args).filter((w) => !w.startsWith('--'));
    return words.slice(0, -1).map((w) => w.replace(/^\.\//, '').replace(/\/+$/, ''));
  });
  const copied = (want: string) => sources.some((s) => s === want || s.endsWith(`/${want}`));
  for (const want of ['dist', 'data', 'package.json']) {
    if (!copied(want))
      problems.push(`${where}: does not COPY ${want} (read at run time from the package root)`);
  }
  checkBuildStage(stages, problems);

  const user = last('USER');
  const name = user?.args.split(':')[0]?.trim();
  if (!user || name === 'root' || name === '0')
    problems.push(`${where}: must switch to a non-root USER, got ${user ? user.args : 'none'}`);

  for (const ins of runtime.instructions.filter((i) => i.op === 'ENV')) {
    for (const [k, v] of envInstruction(ins.args)) facts.env.set(k, v);
  }
  return facts;
}

// ---------------------------------------------------------------------------------------------------------
// the compose file

function validateConfig(
  env: Record<string, string | undefined>,
  where: string,
  problems: string[],
): Config | undefined {
  try {
    return loadConfig(env);
  } catch (err) {
    if (err instanceof ConfigError) {
      problems.push(`${where}: the environment fails loadConfig: ${err.message}`);
      return undefined;
    }
    throw err;
  }
}

function checkUrlHost(
  url: string | undefined,
  host: string,
  port: number,
  what: string,
  where: string,
  problems: string[],
): void {
  if (url === undefined) {
    problems.push(`${where}: ${what} is unset; expected a URL to ${host}:${port}`);
    return;
  }
  let u: URL;
  try {
    u = new URL(url);
  } catch {
    problems.push(`${where}: ${what} ${JSON.stringify(url)} is not a URL`);
    return;
  }
  const defaultPort =
    u.protocol === 'redis:' || u.protocol === 'rediss:' ? 6379 : u.protocol === 'https:' ? 443 : 80;
  const actualPort = u.port === '' ? defaultPort : Number(u.port);
  if (u.hostname !== host)
    problems.push(`${where}: ${what} host is ${JSON.stringify(u.hostname)}, expected the ${host} service`);
  if (actualPort !== port)
    problems.push(`${where}: ${what} port is ${actualPort}, but ${host} listens on ${port}`);
}

/**
 * Every problem found in a parsed docker-compose.yml (merge keys resolved) and the Dockerfile text, as
 * messages naming the service and the setting; [] when all is well.
 */
export function checkCompose(doc: unknown, cli: CliCommands, dockerfileText: string): string[] {
  const problems: string[] = [];
  const docker = checkDockerfile(dockerfileText, cli, problems);
  for (const k of docker.env.keys()) {
    if (!(k in ENV) && !(k in ENV_EXCEPTIONS))
      problems.push(`Dockerfile: ENV ${k} is not a cell0 variable (not in ENV)`);
  }

  if (!isRecord(doc)) return [...problems, 'docker-compose.yml: expected a mapping at the top'];
  const resolved = interpolateAll(doc, 'docker-compose.yml', problems);
  if (!isRecord(resolved) || !isRecord(resolved.services))
    return [...problems, 'docker-compose.yml: no services'];
  const services = resolved.services;
  const topVolumes = isRecord(resolved.volumes) ? resolved.volumes : {};

  for (const name of [REDIS_SERVICE, SIMULATOR_SERVICE, 'api', 'dashboard']) {
    if (!isRecord(services[name])) problems.push(`services.${name}: missing`);
  }

  // --- redis
  const redis = services[REDIS_SERVICE];
  if (isRecord(redis)) {
    const where = `services.${REDIS_SERVICE}`;
    const image = typeof redis.image === 'string' ? redis.image : '';
    const tag = /^redis:(\d+)/.exec(image);
    if (!image.startsWith('redis:'))
      problems.push(`${where}.image: expected redis:<version>, got ${JSON.stringify(redis.image)}`);
    else if (!tag || Number(tag[1]) < 7)
      problems.push(`${where}.image: expected Redis 7 or later, got ${image}`);
    const args = commandOf(redis) ?? [];
    const hasPair = (flag: string, value: string) =>
      args.some((a, i) => (a === flag && args[i + 1] === value) || a === `${flag}=${value}`);
    if (!hasPair('--appendonly', 'yes'))
      problems.push(`${where}.command: missing --appendonly yes (jobs must survive a restart)`);
    if (!hasPair('--maxmemory-policy', 'noeviction'))
      problems.push(`${where}.command: missing --maxmemory-policy noeviction (BullMQ requires it)`);
    const hc = healthcheckText(redis);
    if (!hc) problems.push(`${where}: no healthcheck (the others wait for service_healthy)`);
    else if (!/redis-cli/.test(hc) || !/\bping\b/i.test(hc))
      problems.push(`${where}.healthcheck: expected redis-cli ping, got ${hc}`);
    for (const p of portsOf(redis, where, problems)) {
      if (p.hostIp !== '127.0.0.1')
        problems.push(
          `${where}.ports: ${p.target} is published on ${p.hostIp ?? 'every interface'}; publish it to 127.0.0.1 only`,
        );
    }
    const volumes = Array.isArray(redis.volumes) ? redis.volumes : [];
    const dataVolume = volumes.some((v) => {
      if (isRecord(v))
        return (
          v.type === 'volume' &&
          v.target === '/data' &&
          typeof v.source === 'string' &&
          v.source in topVolumes
        );
      const [source, target] = String(v).split(':');
      return target === '/data' && source !== undefined && source in topVolumes;
    });
    if (!dataVolume)
      problems.push(`${where}.volumes: expected a named volume (declared under volumes:) mounted at /data`);
  }

  // --- the cell0 services: image, command, options, environment
  interface Cell0Service {
    name: string;
    spec: Record<string, unknown>;
    command: string;
    args: string[];
    setEnv: Map<string, string | null>;
    config?: Config;
  }
  const cell0: Cell0Service[] = [];
  const builtImages = new Set<string>();
  for (const spec of Object.values(services)) {
    if (isRecord(spec) && spec.build !== undefined && typeof spec.image === 'string')
      builtImages.add(spec.image);
  }

  const clusterRedis = clusterRedisServices(services);
  for (const [name, spec] of Object.entries(services)) {
    if (name === REDIS_SERVICE || OBSERVABILITY_SERVICES.has(name) || clusterRedis.has(name)) continue;
    const where = `services.${name}`;
    if (!isRecord(spec)) {
      problems.push(`${where}: expected a mapping`);
      continue;
    }
    const context =
      typeof spec.build === 'string' ? spec.build : isRecord(spec.build) ? spec.build.context : undefined;
    if (context !== undefined) {
      if (context !== '.' && context !== './')
        problems.push(`${where}.build: expected the repository root (.), got ${JSON.stringify(context)}`);
    } else if (typeof spec.image !== 'string' || !builtImages.has(spec.image)) {
      problems.push(
        `${where}: neither builds from . nor uses the image a service builds from . (${JSON.stringify(spec.image)})`,
      );
    }

    const argv = commandOf(spec);
    if (!argv || argv.length === 0) {
      problems.push(
        `${where}.command: missing; the image's default would run ${docker.cmd.join(' ') || 'nothing'}`,
      );
      continue;
    }
    const [command, ...args] = argv as [string, ...string[]];
    const options = cli.get(command);
    if (!options) {
      problems.push(
        `${where}.command: ${JSON.stringify(command)} is not a cell0 command (${[...cli.keys()].join(', ')})`,
      );
      continue;
    }
    for (const a of args) {
      if (!a.startsWith('-')) continue;
      const flag = a.split('=')[0] as string;
      if (!options.has(flag))
        problems.push(
          `${where}.command: \`cell0 ${command}\` has no option ${flag} (it has ${[...options].join(', ')})`,
        );
    }

    const setEnv = environmentOf(spec, where, problems);
    for (const k of setEnv.keys()) {
      if (!(k in ENV) && !(k in ENV_EXCEPTIONS))
        problems.push(
          `${where}.environment: ${k} is not a cell0 variable (not in ENV in shared/config/config.ts)`,
        );
    }
    // What the container sees: the image's ENV, overridden by the service's environment.
    const env: Record<string, string | undefined> = Object.fromEntries(docker.env);
    for (const [k, v] of setEnv) if (v !== null) env[k] = v;
    const config = validateConfig(env, where, problems);
    cell0.push({ name, spec, command, args, setEnv, ...(config ? { config } : {}) });
  }

  // In the default stack (the cluster profile's worker does not count).
  const workers = cell0.filter(
    (s) => s.command === 'worker' && !(Array.isArray(s.spec.profiles) && s.spec.profiles.length > 0),
  );
  if (workers.length < 2)
    problems.push(
      `services: expected at least two worker services (command worker), found ${workers.length}`,
    );

  // --- who listens where
  const listen = new Map<string, { host: string; port: number }>();
  for (const s of cell0) {
    if (!s.config) continue;
    const port = optionValue(s.args, ['--port', '-p']);
    if (s.command === 'simulator') {
      listen.set(s.name, {
        host: optionValue(s.args, ['--host']) ?? s.config.simulator.host,
        port: port !== undefined ? Number(port) : s.config.simulator.port,
      });
    } else if (s.command === 'api' || s.command === 'start') {
      listen.set(s.name, {
        host: s.config.api.host,
        port: port !== undefined ? Number(port) : s.config.api.port,
      });
    } else if (s.command === 'dashboard') {
      listen.set(s.name, {
        host: s.config.api.host,
        port: port !== undefined ? Number(port) : s.config.api.dashboardPort,
      });
    }
  }

  for (const s of cell0) {
    const where = `services.${s.name}`;
    const l = listen.get(s.name);
    if (l) {
      const what = s.command === 'simulator' ? 'CELL0_SIM_HOST' : 'CELL0_HOST';
      if (!ALL_INTERFACES.has(l.host))
        problems.push(
          `${where}: listens on ${l.host} (${what}); other containers and published ports need 0.0.0.0`,
        );
      const ports = portsOf(s.spec, where, problems);
      const publishes = ports.some((p) => p.target === l.port && p.published !== undefined);
      if ((s.command === 'api' || s.command === 'dashboard') && !publishes) {
        const got = ports.map((p) => `${p.published ?? '?'}:${p.target}`).join(', ') || 'nothing';
        problems.push(`${where}.ports: listens on ${l.port} but publishes ${got}`);
      }
      for (const p of ports) {
        if (p.target !== l.port)
          problems.push(
            `${where}.ports: publishes container port ${p.target}, but the service listens on ${l.port}`,
          );
      }
      const hc = healthcheckText(s.spec);
      for (const m of hc.matchAll(/\/\/(?:127\.0\.0\.1|localhost|\[::1\]):(\d+)/g)) {
        if (Number(m[1]) !== l.port)
          problems.push(`${where}.healthcheck: probes port ${m[1]}, but the service listens on ${l.port}`);
      }
    }

    const deps = dependsOn(s.spec);
    // Services on the Redis Cluster (profile cluster) are checked by checkCluster.
    if (s.config?.redis.cluster) continue;
    if (REDIS_COMMANDS.has(s.command)) {
      if (deps.get(REDIS_SERVICE) !== 'service_healthy')
        problems.push(
          `${where}.depends_on: expected ${REDIS_SERVICE} with condition service_healthy, got ${deps.get(REDIS_SERVICE) ?? 'none'}`,
        );
    }
    for (const dep of deps.keys()) {
      if (!isRecord(services[dep])) problems.push(`${where}.depends_on: ${dep} is not a service`);
    }

    if (!s.config) continue;
    if (REDIS_COMMANDS.has(s.command) || s.setEnv.has('REDIS_URL')) {
      if (s.config.redis.host !== REDIS_SERVICE || s.config.redis.port !== REDIS_CONTAINER_PORT)
        problems.push(
          `${where}: Redis is ${s.config.redis.host}:${s.config.redis.port} (REDIS_URL ${JSON.stringify(s.setEnv.get('REDIS_URL') ?? null)}), expected ${REDIS_SERVICE}:${REDIS_CONTAINER_PORT}`,
        );
    }

    if (s.command === 'worker') {
      const sim = listen.get(SIMULATOR_SERVICE);
      if (!sim) problems.push(`${where}: no ${SIMULATOR_SERVICE} service to send inference to`);
      else {
        checkUrlHost(
          s.config.providers.ollamaUrl,
          SIMULATOR_SERVICE,
          sim.port,
          'CELL0_OLLAMA_URL',
          where,
          problems,
        );
        if (!deps.has(SIMULATOR_SERVICE))
          problems.push(`${where}.depends_on: should include ${SIMULATOR_SERVICE}`);
      }
      const raw = s.spec.stop_grace_period;
      const grace = raw === undefined ? COMPOSE_DEFAULT_GRACE_MS : parseDuration(String(raw));
      const timeout = s.config.workers.shutdownTimeoutMs;
      if (grace === undefined)
        problems.push(`${where}.stop_grace_period: cannot read ${JSON.stringify(raw)} as a duration`);
      else if (grace < timeout + MIN_GRACE_MARGIN_MS)
        problems.push(
          `${where}.stop_grace_period: ${raw === undefined ? 'unset (compose default 10s)' : String(raw)} = ${grace} ms must exceed CELL0_SHUTDOWN_TIMEOUT_MS (${timeout} ms) by at least ${MIN_GRACE_MARGIN_MS} ms, or Docker kills jobs still finishing`,
        );
    }
  }

  // --- the observability profile: Prometheus scrapes every cell0 service that serves metrics
  const targets: ScrapeTarget[] = [];
  for (const s of cell0) {
    if (!s.config?.metrics.enabled) continue;
    // The cluster profile's services are not part of the observability stack.
    if (Array.isArray(s.spec.profiles) && s.spec.profiles.includes(CLUSTER_PROFILE)) continue;
    if (s.command === 'api' || s.command === 'start')
      targets.push({
        name: s.name,
        command: s.command,
        host: s.config.api.host,
        metricsPort: listen.get(s.name)!.port,
      });
    else if (s.command === 'worker')
      targets.push({
        name: s.name,
        command: s.command,
        host: s.config.api.host,
        metricsPort: s.config.metrics.port,
      });
  }
  checkObservability(services, targets, problems);
  checkCluster(
    services,
    cell0.flatMap((s) => (s.config?.redis.cluster ? [{ name: s.name, spec: s.spec, config: s.config }] : [])),
    problems,
  );
  return problems;
}

// ---------------------------------------------------------------------------------------------------------
// the real CLI

/** Command names listed under "Commands:" in commander's help (without `help`). */
export function parseCommandList(help: string): string[] {
  const section = help.split(/^Commands:\s*$/m)[1] ?? '';
  return [...section.matchAll(/^ {2}([a-z][\w-]*)\b/gm)]
    .map((m) => m[1] as string)
    .filter((c) => c !== 'help');
}

/** Flags listed under "Options:" in commander's help (`-q, --queues <list>` → -q, --queues). */
export function parseOptionList(help: string): Set<string> {
  const section = help.split(/^Options:\s*$/m)[1]?.split(/^\S.*:\s*$/m)[0] ?? '';
  const flags = new Set<string>();
  for (const m of section.matchAll(/^ {2}(-.*?)(?: {2,}|$)/gm)) {
    for (const f of (m[1] as string).matchAll(/(?:^|[\s,])(--?[A-Za-z][\w-]*)/g)) flags.add(f[1] as string);
  }
  return flags;
}

const run = promisify(execFile);
const ROOT = join(__dirname, '..', '..');

/**
 * The real CLI's top-level `--help`, from a child process (the check that the entry point runs and parses).
 * One process only: a transpiling start costs seconds of CPU, many at once time out on a busy machine.
 */
export async function cliHelpFromProcess(): Promise<string> {
  const { stdout } = await run(
    process.execPath,
    ['--import', 'tsx', join(ROOT, 'bin', 'cell0.ts'), '--help'],
    {
      cwd: ROOT,
      timeout: 120_000,
    },
  );
  return stdout;
}

/** The commands of the real `cell0` CLI and each one's options, from the help texts of its commander program. */
export function readCliCommands(): CliCommands {
  const commands = parseCommandList(program.helpInformation());
  const options = commands.map((c) => {
    const cmd = program.commands.find((x) => x.name() === c);
    if (!cmd) throw new Error(`cell0 --help lists ${c}, which the program does not have`);
    return parseOptionList(cmd.helpInformation());
  });
  return new Map(commands.map((c, i) => [c, options[i] as Set<string>]));
}
