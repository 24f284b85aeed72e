/*
 * The test environment of the suite: jest's node environment plus a check for open handles. A test file
 * that leaves a socket, a server, a child process or a referenced timer behind fails the run (jest alone
 * only prints "did not exit" or force-exits its worker). Cheaper than --detectOpenHandles: it compares the
 * worker process's active resources after the file with those before it, and names what is left.
 */
import { connect, Socket } from 'node:net';
import NodeEnvironment from 'jest-environment-node';
import type { EnvironmentContext, JestEnvironmentConfig } from '@jest/environment';
import type { Circus } from '@jest/types';

/** How long teardown lets handles finish closing (sockets end, children exit) before calling them leaked. */
const GRACE_MS = 5000;

function countByType(): Map<string, number> {
  const m = new Map<string, number>();
  for (const t of process.getActiveResourcesInfo()) m.set(t, (m.get(t) ?? 0) + 1);
  return m;
}

/** Resource types with more instances now than in `before`, e.g. "TCPWrap ×2". */
function excess(before: Map<string, number>): string[] {
  const out: string[] = [];
  for (const [type, n] of countByType()) {
    const extra = n - (before.get(type) ?? 0);
    // FS and DNS requests are in-flight operations, not handles: they finish on their own.
    if (extra > 0 && !/^(FSReq|GetAddrInfoReqWrap|FileHandleCloseReq)/.test(type))
      out.push(`${type} ×${extra}`);
  }
  return out;
}

/** The process's handles (sockets, servers, timers…): node's own list, not part of its typed API. */
function activeHandles(): object[] {
  const p = process as unknown as { _getActiveHandles?: () => object[] };
  return p._getActiveHandles?.() ?? [];
}

/** A socket's libuv handle as node keeps it: a TCP or Pipe wrap, gone once the socket is destroyed. */
type SocketHandle = { constructor: { name: string } };

/**
 * The sockets that were not open in `before` and still hold the process open (not destroyed; node's list of
 * active handles leaves unref()'d ones out), counted by resource type as process.getActiveResourcesInfo()
 * names them ("TCPWrap", "PipeWrap"). The check by type counts alone can miss one: a socket of jest's that
 * closed during the file hides one the file left.
 */
export function socketsLeft(before: Set<object>): Map<string, number> {
  const m = new Map<string, number>();
  for (const h of activeHandles()) {
    if (before.has(h) || !(h instanceof Socket) || h.destroyed) continue;
    const handle = (h as unknown as { _handle?: SocketHandle | null })._handle;
    if (!handle) continue;
    const type = `${handle.constructor.name}Wrap`;
    m.set(type, (m.get(type) ?? 0) + 1);
  }
  return m;
}

/**
 * Where each socket of the worker process was connected from: the stack of its `connect` call, recorded
 * while a test file runs (see HandleCheckEnvironment.setup), so that a leaked socket names its opener.
 */
const openedAt = new WeakMap<Socket, string>();
const realConnect = Socket.prototype.connect;
let recording = 0;

function recordOpeners(): void {
  if (recording++ > 0) return;
  Socket.prototype.connect = function (this: Socket, ...args: unknown[]) {
    if (!openedAt.has(this)) {
      const stack = new Error().stack ?? '';
      // The frames that are not node's own or jest's: the project's code and the libraries it called.
      const frames = stack
        .split('\n')
        .slice(2)
        .filter((l) => !/\(node:|node_modules\/(jest|@jest)/.test(l))
        .slice(0, 8)
        .map((l) => l.trim().replace(/^at /, ''));
      openedAt.set(this, frames.join(' < '));
    }
    return (realConnect as (...a: unknown[]) => Socket).apply(this, args);
  } as Socket['connect'];
}

function stopRecording(): void {
  if (--recording === 0) Socket.prototype.connect = realConnect;
}

/**
 * The timers a test file set through its globals (setTimeout, setInterval), each with the place it was set
 * from, so that a leaked timer names its setter. The stack is captured structured and formatted only when
 * a leak is reported (a capture costs about a microsecond; the formatting would cost far more per timer).
 */
interface TimerRecord {
  readonly ms: number;
  readonly repeat: boolean;
  readonly where: { stack?: string };
}

/** NodeJS.Timeout as the tracker reads it: hasRef() is public; _destroyed is set once it fired or was cleared. */
type TrackedTimer = NodeJS.Timeout & { _destroyed?: boolean };

export class TimerTracker {
  readonly live = new Map<TrackedTimer, TimerRecord>();
  private saved: Record<string, unknown> = {};

  install(g: Record<string, unknown>): void {
    const names = ['setTimeout', 'setInterval', 'clearTimeout', 'clearInterval'] as const;
    for (const n of names) this.saved[n] = g[n];
    const live = this.live;
    const wrapSet = (real: (...a: unknown[]) => TrackedTimer, repeat: boolean) => {
      const wrapped = function (fn: unknown, ms?: number, ...args: unknown[]): TrackedTimer {
        const where: { stack?: string } = {};
        Error.captureStackTrace(where, wrapped);
        const cb =
          typeof fn === 'function' && !repeat
            ? function (this: unknown, ...a: unknown[]) {
                live.delete(timer);
                return (fn as (...x: unknown[]) => unknown).apply(this, a);
              }
            : fn;
        const timer = real(cb, ms, ...args);
        // Timers stopped by other means (timer.close(), node's own clearTimeout) leave entries: drop them now and then.
        if (live.size >= 10_000) for (const t of live.keys()) if (t._destroyed === true) live.delete(t);
        live.set(timer, { ms: Number(ms ?? 0), repeat, where });
        return timer;
      };
      // util.promisify(setTimeout) and friends keep working.
      for (const key of Object.getOwnPropertySymbols(real)) {
        (wrapped as unknown as Record<symbol, unknown>)[key] = (real as unknown as Record<symbol, unknown>)[
          key
        ];
      }
      return wrapped;
    };
    const wrapClear = (real: (t: unknown) => void) =>
      function (t: unknown): void {
        live.delete(t as TrackedTimer);
        real(t);
      };
    g.setTimeout = wrapSet(this.saved.setTimeout as (...a: unknown[]) => TrackedTimer, false);
    g.setInterval = wrapSet(this.saved.setInterval as (...a: unknown[]) => TrackedTimer, true);
    g.clearTimeout = wrapClear(this.saved.clearTimeout as (t: unknown) => void);
    g.clearInterval = wrapClear(this.saved.clearInterval as (t: unknown) => void);
  }

  uninstall(g: Record<string, unknown>): void {
    Object.assign(g, this.saved);
  }

  /** The timers still pending and holding the process open, e.g. "5000 ms timeout set at f (file:12) < …". */
  describeLeaked(): string[] {
    const out: string[] = [];
    for (const [t, r] of this.live) {
      if (t._destroyed === true || !t.hasRef()) continue;
      const frames = (r.where.stack ?? '')
        .split('\n')
        .slice(1)
        .filter((l) => !/\(node:|node_modules\/(jest|@jest)/.test(l))
        .slice(0, 8)
        .map((l) => l.trim().replace(/^at /, ''));
      out.push(`${r.ms} ms ${r.repeat ? 'interval' : 'timeout'} set at ${frames.join(' < ')}`);
    }
    return out;
  }
}

/**
 * Redis's CLIENT LIST from host:port ('' when that is no Redis or does not answer within 1 s): for a leaked
 * socket to a Redis, its line there gives the connection's name and last command.
 */
function clientList(host: string, port: number): Promise<string> {
  return new Promise((resolve) => {
    let text = '';
    const s = connect({ host, port }, () => s.write('CLIENT LIST\r\n'));
    const done = () => {
      s.destroy();
      resolve(text);
    };
    s.setTimeout(1000, done);
    s.on('data', (d) => {
      text += d.toString();
      // A bulk string: "$<length>\r\n<lines>\r\n".
      const m = /^\$(\d+)\r\n/.exec(text);
      if (m && Buffer.byteLength(text) >= m[0].length + Number(m[1]) + 2) done();
      else if (text.startsWith('-')) done();
    });
    s.on('error', done);
  });
}

/**
 * What each leaked socket was talking to, to find who opened it, e.g. "127.0.0.1:6379 from :40122 (open; 230
 * bytes written, 1203 read; redis name=cell0:test cmd=bzpopmin)".
 */
async function describeSockets(before: Set<object>): Promise<string[]> {
  const out: string[] = [];
  const lists = new Map<string, Promise<string>>();
  for (const h of activeHandles()) {
    if (before.has(h) || !(h instanceof Socket)) continue;
    const state = [h.connecting && 'connecting', h.destroyed && 'destroyed', h.readyState]
      .filter(Boolean)
      .join(', ');
    let redis = '';
    if (h.remoteAddress && h.remotePort) {
      const key = `${h.remoteAddress}:${h.remotePort}`;
      if (!lists.has(key)) lists.set(key, clientList(h.remoteAddress, h.remotePort));
      const line = (await lists.get(key)!)
        .split('\n')
        .find((l) => l.includes(` laddr=`) && l.includes(`addr=${h.localAddress}:${h.localPort} `));
      if (line) redis = `; redis ${/ name=\S*/.exec(line)?.[0].trim()} ${/ cmd=\S*/.exec(line)?.[0].trim()}`;
    }
    out.push(
      `${h.remoteAddress ?? '?'}:${h.remotePort ?? '?'} from :${h.localPort ?? '?'} (${state}; ` +
        `${h.bytesWritten} bytes written, ${h.bytesRead} read${redis}` +
        `${openedAt.has(h) ? `; opened at ${openedAt.get(h)}` : ''})`,
    );
  }
  return out;
}

export default class HandleCheckEnvironment extends NodeEnvironment {
  private readonly testPath: string;
  private before = new Map<string, number>();
  private handlesBefore = new Set<object>();
  /** The file's failed tests and hooks: jest reports only the teardown's error once that throws. */
  private failures: string[] = [];
  private readonly timers = new TimerTracker();

  constructor(config: JestEnvironmentConfig, context: EnvironmentContext) {
    super(config, context);
    this.testPath = context.testPath;
  }

  override async setup(): Promise<void> {
    await super.setup();
    this.before = countByType();
    this.handlesBefore = new Set(activeHandles());
    recordOpeners();
    this.timers.install(this.global as unknown as Record<string, unknown>);
  }

  handleTestEvent(event: Circus.Event): void {
    if (event.name !== 'test_fn_failure' && event.name !== 'hook_failure') return;
    const where = event.test?.name ?? (event.name === 'hook_failure' ? `${event.hook.type} hook` : '');
    const err = event.error as { message?: unknown } | string | undefined;
    const message = typeof err === 'object' && err !== null ? String(err.message) : String(err);
    this.failures.push(`"${where}": ${message.split('\n')[0]!.slice(0, 300)}`);
  }

  override async teardown(): Promise<void> {
    const deadline = Date.now() + GRACE_MS;
    // By type counts, a timer of jest's that ended during the file can hide one the file left (an in-band run
    // of one file did): the timers the file set itself, and the sockets opened during it, are checked one by
    // one as well.
    const pending = (): string[] => {
      const l = excess(this.before);
      const own = this.timers.describeLeaked().length;
      if (own > 0 && !l.some((t) => t.startsWith('Timeout'))) l.push(`Timeout ×${own}`);
      for (const [type, n] of socketsLeft(this.handlesBefore))
        if (!l.some((t) => t.startsWith(`${type} `))) l.push(`${type} ×${n}`);
      return l;
    };
    let left = pending();
    while (left.length > 0 && Date.now() < deadline) {
      await new Promise((r) => setTimeout(r, 50));
      left = pending();
    }
    const sockets = left.length > 0 ? await describeSockets(this.handlesBefore) : [];
    const timers = left.some((t) => t.startsWith('Timeout')) ? this.timers.describeLeaked() : [];
    stopRecording();
    this.timers.uninstall(this.global as unknown as Record<string, unknown>);
    await super.teardown();
    if (left.length > 0)
      throw new Error(
        `${this.testPath}: open handles ${GRACE_MS} ms after its tests ended: ${left.join(', ')} ` +
          (sockets.length > 0 ? `[sockets: ${sockets.join('; ')}] ` : '') +
          (timers.length > 0 ? `[timers: ${timers.join('; ')}] ` : '') +
          // A failed test often left them (it never reached its own close): jest would not show its error.
          (this.failures.length > 0 ? `[after the failures of ${this.failures.join('; ')}] ` : '') +
          '(close every server, connection, child process and timer the file started; unref() background timers)',
      );
  }
}
