// qemu-ga's byte stream cut into frames: JSON replies, the 0xFF delimiter that ends a
// resynchronisation, and garbage (see guest-agent.ts for the protocol).

export type AgentFrame = { kind: 'delimiter' } | { kind: 'reply'; value: unknown } | { kind: 'garbage'; text: string };

/**
 * Splits the agent's byte stream into replies without relying on newlines: tracks braces and
 * strings byte by byte (UTF-8 continuation bytes are ≥ 0x80, so structure bytes are never inside a
 * character), so a reply split across chunks, or several in one chunk, come out whole. 0xFF
 * (never valid in UTF-8 JSON) is the delimiter guest-sync-delimited sends; it also ends any
 * half-read value. After expectDelimiter(), everything up to the next 0xFF is dropped.
 */
export class AgentFrameParser {
  private parts: Buffer[] = [];
  private depth = 0;
  private inString = false;
  private escaped = false;
  private skipping = false;

  /** Drop everything until the next 0xFF (used right before guest-sync-delimited). */
  expectDelimiter(): void {
    this.skipping = true;
    this.reset();
  }

  push(chunk: Buffer): AgentFrame[] {
    const frames: AgentFrame[] = [];
    let start = -1; // start of the current value within this chunk
    let garbage = '';
    const flushGarbage = () => {
      if (garbage) frames.push({ kind: 'garbage', text: garbage });
      garbage = '';
    };
    for (let i = 0; i < chunk.length; i++) {
      const b = chunk[i]!;
      if (b === 0xff) {
        flushGarbage();
        this.skipping = false;
        this.reset();
        start = -1;
        frames.push({ kind: 'delimiter' });
        continue;
      }
      if (this.skipping) continue;
      if (this.depth === 0) {
        if (b === 0x20 || b === 0x0a || b === 0x0d || b === 0x09) continue;
        if (b !== 0x7b /* { */) {
          // Not a reply (the agent only sends objects): the tail of one cut off at a delimiter, say.
          garbage += String.fromCharCode(b);
          continue;
        }
        flushGarbage();
        start = i;
        this.depth = 1;
        continue;
      }
      if (start < 0) start = i; // a value that began in an earlier chunk
      if (this.inString) {
        if (this.escaped) this.escaped = false;
        else if (b === 0x5c /* \ */) this.escaped = true;
        else if (b === 0x22 /* " */) this.inString = false;
        continue;
      }
      if (b === 0x22) this.inString = true;
      else if (b === 0x7b || b === 0x5b) this.depth++;
      else if (b === 0x7d || b === 0x5d) {
        this.depth--;
        if (this.depth === 0) {
          this.parts.push(chunk.subarray(start, i + 1));
          const text = Buffer.concat(this.parts).toString('utf8');
          this.parts = [];
          start = -1;
          try {
            frames.push({ kind: 'reply', value: JSON.parse(text) as unknown });
          } catch {
            frames.push({ kind: 'garbage', text });
          }
        }
      }
    }
    flushGarbage();
    if (this.depth > 0 && start >= 0) this.parts.push(chunk.subarray(start));
    return frames;
  }

  private reset(): void {
    this.parts = [];
    this.depth = 0;
    this.inString = false;
    this.escaped = false;
  }
}
