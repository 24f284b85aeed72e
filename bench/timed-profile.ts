/*
 * A CPU profile of a child process over a chosen window only (bench:http --cpu-prof-timed): the child is
 * started with `--inspect=127.0.0.1:PORT`, and around the timed runs the bench attaches through the inspector
 * protocol (Node's WebSocket client) and starts and stops V8's sampling profiler. Unlike `node --cpu-prof`,
 * whose profile covers the whole life of the process, it leaves out the start (module loading, the lexicon
 * read, Lua script preparation) and the warm-up, which in a run of a few seconds are a fifth of the samples
 * or more. The file is a regular .cpuprofile (bench/profile-summary.ts, Chrome DevTools).
 */
import { mkdirSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';

/** The node arguments that open the inspector of a child on `port` (loopback only). */
export function inspectArgs(port: number): string[] {
  return [`--inspect=127.0.0.1:${port}`];
}

/** A profiling session on the inspector at `port`: start() begins sampling, stop(file) writes the profile. */
export class TimedProfile {
  private ws?: WebSocket;
  private seq = 0;
  private readonly pending = new Map<number, { resolve: (v: unknown) => void; reject: (e: Error) => void }>();

  constructor(private readonly port: number) {}

  /** Attaches to the child's inspector and starts sampling every `intervalUs` µs (--cpu-prof's default). */
  async start(intervalUs = 1000): Promise<void> {
    const res = await fetch(`http://127.0.0.1:${this.port}/json/list`);
    const targets = (await res.json()) as { webSocketDebuggerUrl?: string }[];
    const url = targets[0]?.webSocketDebuggerUrl;
    if (!url) throw new Error(`no inspector target on port ${this.port}`);
    const ws = new WebSocket(url);
    await new Promise<void>((resolve, reject) => {
      ws.addEventListener('open', () => resolve(), { once: true });
      ws.addEventListener('error', () => reject(new Error(`inspector at ${url} did not open`)), {
        once: true,
      });
    });
    ws.addEventListener('message', (ev: MessageEvent) => {
      const msg = JSON.parse(String(ev.data)) as {
        id?: number;
        result?: unknown;
        error?: { message: string };
      };
      if (msg.id === undefined) return;
      const p = this.pending.get(msg.id);
      if (!p) return;
      this.pending.delete(msg.id);
      if (msg.error) p.reject(new Error(msg.error.message));
      else p.resolve(msg.result);
    });
    ws.addEventListener('close', () => {
      for (const p of this.pending.values()) p.reject(new Error('inspector closed'));
      this.pending.clear();
    });
    this.ws = ws;
    await this.call('Profiler.enable');
    await this.call('Profiler.setSamplingInterval', { interval: intervalUs });
    await this.call('Profiler.start');
  }

  /** Stops sampling, writes the profile to `dir/name.cpuprofile` and detaches; returns the file's path. */
  async stop(dir: string, name: string): Promise<string> {
    const { profile } = (await this.call('Profiler.stop')) as { profile: unknown };
    const file = join(dir, `${name}.cpuprofile`);
    // The directory may not exist yet: --cpu-prof creates its own, and this option is used the same way.
    mkdirSync(dir, { recursive: true });
    writeFileSync(file, JSON.stringify(profile));
    this.ws?.close();
    this.ws = undefined;
    return file;
  }

  private call(method: string, params: Record<string, unknown> = {}): Promise<unknown> {
    const ws = this.ws;
    if (!ws) return Promise.reject(new Error('not attached'));
    const id = ++this.seq;
    return new Promise((resolve, reject) => {
      this.pending.set(id, { resolve, reject });
      ws.send(JSON.stringify({ id, method, params }));
    });
  }
}
