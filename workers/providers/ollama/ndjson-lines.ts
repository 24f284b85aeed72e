/**
 * Splits a byte stream, handed over chunk by chunk, into NDJSON lines. Chunk boundaries fall anywhere
 * (inside a line, inside a multi-byte character), so bytes are decoded in streaming mode and a partial line
 * is held until its newline arrives. Blank lines are skipped; a last line without a trailing newline is
 * still given by end(). Synchronous: a streamed generation's body comes about one chunk per token, and each
 * line reaches its reader in the call that received the chunk, with no promise or generator step between.
 */
export class NdjsonLines {
  private readonly decoder = new TextDecoder('utf-8');
  private pending = '';

  constructor(private readonly onLine: (line: string) => void) {}

  /** Gives every line the chunk completes, in order. */
  push(chunk: Uint8Array | string): void {
    const text = typeof chunk === 'string' ? chunk : this.decoder.decode(chunk, { stream: true });
    let newline = text.indexOf('\n');
    if (newline === -1) {
      this.pending += text;
      return;
    }
    // The held part of a line is joined to its rest once; whole lines are cut from the chunk's text.
    let from = 0;
    let head = this.pending;
    this.pending = '';
    while (newline !== -1) {
      const line = (head + text.slice(from, newline)).trim();
      head = '';
      from = newline + 1;
      if (line.length > 0) this.onLine(line);
      newline = text.indexOf('\n', from);
    }
    this.pending = text.slice(from);
  }

  /** The stream is over: gives its last line when it had no trailing newline. */
  end(): void {
    const last = (this.pending + this.decoder.decode()).trim();
    this.pending = '';
    if (last.length > 0) this.onLine(last);
  }
}
