import { Command } from 'ioredis';

/** An ioredis command as its encoder sees it (ioredis 5 Command: name, arguments, whether one is a Buffer). */
interface EncodedCommand {
  name: string;
  args: unknown[];
  bufferMode?: boolean;
}

type ToWritable = (this: EncodedCommand, socket?: unknown) => string | Buffer;

let original: ToWritable | undefined;

/**
 * Makes ioredis encode a command that has a Buffer argument with one string write per Buffer instead of
 * three native calls per argument. ioredis 5 sends such a command (bufferMode: BullMQ's scripts with msgpack
 * arguments, cell0's batched add and finish scripts) as one Buffer built by its MixedBuffers, which measures
 * every piece twice (Buffer.byteLength) and writes each piece ("$<len>\r\n", the argument, "\r\n") into the
 * Buffer on its own: for the batched finish of a few jobs (14 keys, ~9 arguments per job) ~4.5 µs per job,
 * most of the command's cost to the process. Here the text between two Buffers is joined into one string
 * first, so the Buffer is made with one length sum, one write per run of text and one copy per Buffer:
 * byte for byte the same output (test/integration/command-encoding.test.ts checks it against ioredis's own), ~1 µs
 * per job. Commands without a Buffer argument, and any argument that is neither a string nor a Buffer
 * (ioredis's own encoding decides what that becomes), are left to ioredis's encoder. Idempotent.
 */
export function encodeBufferCommandsInOneWrite(): void {
  const proto = Command.prototype as unknown as { toWritable: ToWritable };
  if (original !== undefined || typeof proto.toWritable !== 'function') return;
  const ioredisOwn = proto.toWritable;
  original = ioredisOwn;
  proto.toWritable = function (this: EncodedCommand, socket?: unknown): string | Buffer {
    if (!this.bufferMode) return ioredisOwn.call(this, socket);
    return encodeMixed(this.name, this.args) ?? ioredisOwn.call(this, socket);
  };
}

/** ioredis's own encoder (for tests and comparisons); the current one when it was never replaced. */
export function ioredisToWritable(): ToWritable {
  return original ?? (Command.prototype as unknown as { toWritable: ToWritable }).toWritable;
}

/**
 * The RESP encoding of command `name` with `args` (strings and Buffers) as one Buffer, or undefined when an
 * argument is neither.
 */
export function encodeMixed(name: string, args: readonly unknown[]): Buffer | undefined {
  let text = '*' + (args.length + 1) + '\r\n$' + Buffer.byteLength(name) + '\r\n' + name + '\r\n';
  // Runs of text, each followed by a Buffer: [text, buffer, text, buffer, ...], then the last text.
  const parts: (string | Buffer)[] = [];
  let length = 0;
  for (let i = 0; i < args.length; i++) {
    const arg = args[i];
    if (typeof arg === 'string') {
      text += '$' + Buffer.byteLength(arg) + '\r\n' + arg + '\r\n';
    } else if (arg instanceof Buffer) {
      if (arg.length === 0) {
        text += '$0\r\n\r\n';
        continue;
      }
      text += '$' + arg.length + '\r\n';
      length += Buffer.byteLength(text) + arg.length;
      parts.push(text, arg);
      text = '\r\n';
    } else return undefined;
  }
  const out = Buffer.allocUnsafe(length + Buffer.byteLength(text));
  let offset = 0;
  for (let i = 0; i < parts.length; i += 2) {
    offset += out.write(parts[i] as string, offset);
    const b = parts[i + 1] as Buffer;
    offset += b.copy(out, offset);
  }
  out.write(text, offset);
  return out;
}
