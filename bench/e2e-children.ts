/*
 * bench:e2e's child processes: spawning a producer or worker script, waiting for its messages, stopping it.
 */
import { fork, type ChildProcess } from 'node:child_process';
import { mkdirSync } from 'node:fs';
import {
  isChildMessage,
  type ChildMessage,
  type ParentMessage,
  type ProducerConfig,
  type WorkerConfig,
} from './e2e-common.js';
import { type Options } from './e2e-options.js';

/** Children alive now, for Ctrl-C. */
export const liveChildren = new Set<ChildProcess>();

export function spawnChild(
  script: string,
  config: WorkerConfig | ProducerConfig,
  opts: Options,
  label: string,
): ChildProcess {
  const execArgv = ['--import', 'tsx', ...opts.nodeFlags];
  if (opts.cpuProfDir) {
    mkdirSync(opts.cpuProfDir, { recursive: true });
    execArgv.push(
      '--cpu-prof',
      '--cpu-prof-dir',
      opts.cpuProfDir,
      '--cpu-prof-name',
      `${label}.${Date.now()}.cpuprofile`,
    );
  }
  const child = fork(script, [JSON.stringify(config)], {
    execArgv,
    stdio: ['ignore', 'inherit', 'inherit', 'ipc'],
  });
  liveChildren.add(child);
  child.once('exit', () => liveChildren.delete(child));
  return child;
}

/** Resolves with the child's first message of type `type`; rejects on an error message, exit or timeout. */
export function nextMessage<T extends ChildMessage['type']>(
  child: ChildProcess,
  type: T,
  timeoutMs: number,
  what: string,
): Promise<Extract<ChildMessage, { type: T }>> {
  return new Promise((resolvePromise, reject) => {
    const cleanup = () => {
      clearTimeout(timer);
      child.off('message', onMessage);
      child.off('exit', onExit);
    };
    const onMessage = (m: unknown) => {
      if (!isChildMessage(m)) return;
      if (m.type === 'error') {
        cleanup();
        reject(new Error(`${what} failed: ${m.message}`));
      } else if (m.type === type) {
        cleanup();
        resolvePromise(m as Extract<ChildMessage, { type: T }>);
      }
    };
    const onExit = (code: number | null, signal: NodeJS.Signals | null) => {
      cleanup();
      reject(new Error(`${what} exited (code ${code}, signal ${signal}) before sending "${type}"`));
    };
    const timer = setTimeout(() => {
      cleanup();
      reject(new Error(`${what} sent no "${type}" within ${timeoutMs} ms`));
    }, timeoutMs);
    child.on('message', onMessage);
    child.on('exit', onExit);
  });
}

/** Waits for a child to exit; SIGTERM first (unless already gone), SIGKILL after `graceMs`. */
export function stopChild(
  child: ChildProcess,
  graceMs: number,
  signal: NodeJS.Signals | null = 'SIGTERM',
): Promise<void> {
  if (child.exitCode !== null || child.signalCode !== null) return Promise.resolve();
  return new Promise((resolvePromise) => {
    const timer = setTimeout(() => child.kill('SIGKILL'), graceMs);
    child.once('exit', () => {
      clearTimeout(timer);
      resolvePromise();
    });
    if (signal) child.kill(signal);
  });
}

export function send(child: ChildProcess, msg: ParentMessage): void {
  child.send(msg);
}
