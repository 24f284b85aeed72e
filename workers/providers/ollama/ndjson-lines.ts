/**
 * Splits a byte stream into NDJSON lines. Chunk boundaries fall anywhere (inside a line, inside a multi-byte
 * character), so bytes are decoded in streaming mode and a partial line is held until its newline arrives.
 * Blank lines are skipped; a last line without a trailing newline is still yielded.
 */
export async function* ndjsonLines(chunks: AsyncIterable<Uint8Array | string>): AsyncGenerator<string> {
  const decoder = new TextDecoder('utf-8');
  let pending = '';
  for await (const chunk of chunks) {
    pending += typeof chunk === 'string' ? chunk : decoder.decode(chunk, { stream: true });
    let newline = pending.indexOf('\n');
    while (newline !== -1) {
      const line = pending.slice(0, newline).trim();
      pending = pending.slice(newline + 1);
      if (line.length > 0) yield line;
      newline = pending.indexOf('\n');
    }
  }
  pending += decoder.decode();
  const last = pending.trim();
  if (last.length > 0) yield last;
}
