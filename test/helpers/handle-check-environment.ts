/*
 * The test environment of the suite: jest's node environment plus a check for open handles. A test file
 * that leaves a socket, a server, a child process or a referenced timer behind fails the run (jest alone
 * only prints "did not exit" or force-exits its worker). Cheaper than --detectOpenHandles: it compares the
 * worker process's active resources after the file with those before it, and names what is left.
 */
import NodeEnvironment from 'jest-environment-node';
import type { EnvironmentContext, JestEnvironmentConfig } from '@jest/environment';

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

export default class HandleCheckEnvironment extends NodeEnvironment {
  private readonly testPath: string;
  private before = new Map<string, number>();

  constructor(config: JestEnvironmentConfig, context: EnvironmentContext) {
    super(config, context);
    this.testPath = context.testPath;
  }

  override async setup(): Promise<void> {
    await super.setup();
    this.before = countByType();
  }

  override async teardown(): Promise<void> {
    const deadline = Date.now() + GRACE_MS;
    let left = excess(this.before);
    while (left.length > 0 && Date.now() < deadline) {
      await new Promise((r) => setTimeout(r, 50));
      left = excess(this.before);
    }
    await super.teardown();
    if (left.length > 0)
      throw new Error(
        `${this.testPath}: open handles ${GRACE_MS} ms after its tests ended: ${left.join(', ')} ` +
          '(close every server, connection, child process and timer the file started; unref() background timers)',
      );
  }
}
