/*
 * Redis's MONITOR on a socket of its own, for tests that count the commands a script call runs.
 *
 * Not ioredis's monitor(): ioredis switches a connection to monitoring only once MONITOR's +OK has been
 * handed to a promise callback, so on a busy Redis the monitor lines that come in the same read as the +OK
 * are taken for replies to no command ("Command queue state error … Last reply: 1796487534.928117 [0
 * 127.0.0.1:33298] "info""). That error rejects monitor()'s promise, and the connection then reconnects and
 * monitors again on a socket the caller never gets: the test failed and left an open socket behind. Here
 * the +OK is read first and every line after it is a monitor line.
 */
import { connect } from 'node:net';

/** One monitored command: its arguments (the command name first) and where it came from. */
export interface MonitoredCommand {
  /** The command and its arguments, as Redis printed them (unescaped). */
  args: string[];
  /** `lua` for a command a script ran, else the client's address (`127.0.0.1:40122`). */
  source: string;
  /** The database number. */
  db: string;
}

export interface RedisMonitor {
  /** Ends the monitoring connection; resolves once its socket is closed. */
  close(): Promise<void>;
}

/**
 * Starts MONITOR on the Redis at `url` (redis://[user:password@]host:port) and resolves once Redis has
 * answered it: every command Redis runs from then on goes to `onCommand`, in order.
 */
export function monitorRedis(url: string, onCommand: (c: MonitoredCommand) => void): Promise<RedisMonitor> {
  const u = new URL(url);
  const socket = connect({ host: u.hostname || '127.0.0.1', port: Number(u.port || 6379) });
  const closed = new Promise<void>((resolve) => socket.once('close', () => resolve()));
  const monitor: RedisMonitor = {
    close: () => {
      socket.end();
      return closed;
    },
  };
  return new Promise<RedisMonitor>((resolve, reject) => {
    // Replies still awaited before the monitor lines: AUTH's (when the URL has a password) and MONITOR's.
    let awaitingOk = 1;
    let pending = '';
    const fail = (err: Error) => {
      socket.destroy();
      reject(err);
    };
    socket.once('error', fail);
    // Closed before its +OK (reject does nothing once resolved).
    void closed.then(() =>
      reject(new Error(`MONITOR on ${u.host}: the connection closed before its answer`)),
    );
    socket.once('connect', () => {
      if (u.password) {
        awaitingOk++;
        const auth = u.username
          ? ['AUTH', decodeURIComponent(u.username), decodeURIComponent(u.password)]
          : ['AUTH', decodeURIComponent(u.password)];
        socket.write(encode(auth));
      }
      socket.write(encode(['MONITOR']));
    });
    socket.setEncoding('latin1');
    socket.on('data', (chunk: string) => {
      pending += chunk;
      let end: number;
      while ((end = pending.indexOf('\r\n')) >= 0) {
        const line = pending.slice(0, end);
        pending = pending.slice(end + 2);
        if (awaitingOk > 0) {
          if (line !== '+OK') return fail(new Error(`MONITOR on ${u.host} answered ${line}`));
          if (--awaitingOk === 0) {
            socket.off('error', fail);
            // A socket error after the start closes the socket; close() still resolves.
            socket.on('error', () => undefined);
            resolve(monitor);
          }
          continue;
        }
        const parsed = parseMonitorLine(line);
        if (parsed) onCommand(parsed);
      }
    });
  });
}

/** A command in RESP (bulk strings). */
function encode(args: string[]): string {
  return `*${args.length}\r\n` + args.map((a) => `$${Buffer.byteLength(a)}\r\n${a}\r\n`).join('');
}

/**
 * A monitor line: `+1712098529.327989 [0 127.0.0.1:62763] "set" "k" "a \"quoted\" value"`. Arguments are
 * printed quoted with backslash escapes (\\ \" \n \r \t \a \b \xHH), bytes as latin1; decoded here to UTF-8.
 */
export function parseMonitorLine(line: string): MonitoredCommand | undefined {
  const open = line.indexOf(' [');
  const close = line.indexOf('] ', open);
  if (!line.startsWith('+') || open < 0 || close < 0) return undefined;
  const [db = '', source = ''] = line.slice(open + 2, close).split(' ');
  const args: string[] = [];
  let i = close + 2;
  while (i < line.length) {
    if (line[i] === ' ') {
      i++;
      continue;
    }
    if (line[i] !== '"') return undefined;
    const bytes: number[] = [];
    i++;
    while (i < line.length && line[i] !== '"') {
      let c = line.charCodeAt(i);
      if (line[i] === '\\') {
        const e = line[i + 1];
        i++;
        if (e === 'x') {
          c = parseInt(line.slice(i + 1, i + 3), 16);
          i += 2;
        } else c = (ESCAPES[e ?? ''] ?? e ?? '').charCodeAt(0);
      }
      bytes.push(c);
      i++;
    }
    i++; // the closing quote
    args.push(Buffer.from(bytes).toString('utf8'));
  }
  return { args, source, db };
}

const ESCAPES: Record<string, string> = {
  n: '\n',
  r: '\r',
  t: '\t',
  a: '\x07',
  b: '\b',
  '\\': '\\',
  '"': '"',
};
