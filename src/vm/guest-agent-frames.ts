// qemu-ga's byte stream cut into frames: JSON replies, the 0xFF delimiter that ends a
// resynchronisation, and garbage (see guest-agent.ts for the protocol).

/**
 * Largest reply kept (bytes of JSON). The largest legitimate one vmlet asks for is
 * guest-exec-status with both streams full: qemu-ga keeps 16 MiB of each (guest-exec.ts), base64
 * makes that 2 × 21.4 MiB, so 64 MiB leaves room; anything longer is a hostile or broken guest.
 */
export const MAX_AGENT_FRAME_BYTES = 64 * 1024 * 1024;

export type AgentFrame =
  | { kind: 'delimiter' }
  | { kind: 'reply'; value: unknown }
  | { kind: 'garbage'; text: string }
  /** A reply longer than the cap: its bytes are dropped as they come (reported once per reply). */
  | { kind: 'oversized'; limit: number };

/**
 * Splits the agent's byte stream into replies without relying on newlines: tracks braces and
 * strings byte by byte (UTF-8 continuation bytes are ≥ 0x80, so structure bytes are never inside a
 * character), so a reply split across chunks, or several in one chunk, come out whole. 0xFF
 * (never valid in UTF-8 JSON) is the delimiter guest-sync-delimited sends; it also ends any
 * half-read value. After expectDelimiter(), everything up to the next 0xFF is dropped.
 * A value longer than `maxFrameBytes` is reported once as 'oversized', then only scanned (not
 * kept) until it ends or a 0xFF comes: a guest sending an endless string costs no memory, and the
 * parser is in step again for the value after it.
 */
export class AgentFrameParser {
  private parts: Buffer[] = [];
  /** Bytes in `parts`. */
  private held = 0;
  private oversized = false;
  private depth = 0;
  private inString = false;
  private escaped = false;
  private skipping = false;

  constructor(private readonly maxFrameBytes = MAX_AGENT_FRAME_BYTES) {}

  /** Bytes held for the value being read: never more than the cap, whatever the guest sends. */
  get buffered(): number {
    return this.held;
  }

  /** Drop everything until the next 0xFF (used right before guest-sync-delimited). */
  expectDelimiter(): void {
    this.skipping = true;
    this.reset();
  }

  push(chunk: Buffer): AgentFrame[] {
    const frames: AgentFrame[] = [];
    let start = -1; // start of the current value within this chunk (-1: none, or not kept)
    let garbage = '';
    const flushGarbage = () => {
      if (garbage) frames.push({ kind: 'garbage', text: garbage });
      garbage = '';
    };
    /** Keeps chunk[start, end) unless that takes the value past the cap. */
    const keep = (end: number): boolean => {
      if (this.held + (end - start) > this.maxFrameBytes) {
        this.parts = [];
        this.held = 0;
        this.oversized = true;
        start = -1;
        frames.push({ kind: 'oversized', limit: this.maxFrameBytes });
        return false;
      }
      this.parts.push(chunk.subarray(start, end));
      this.held += end - start;
      return true;
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
          if (garbage.length < 200) garbage += String.fromCharCode(b);
          continue;
        }
        flushGarbage();
        start = i;
        this.depth = 1;
        continue;
      }
      if (start < 0 && !this.oversized) start = i; // a value that began in an earlier chunk
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
        if (this.depth > 0) continue;
        if (this.oversized) {
          // The end of a dropped value: in step again for the next one.
          this.oversized = false;
          continue;
        }
        if (!keep(i + 1)) {
          this.oversized = false;
          continue;
        }
        const text = Buffer.concat(this.parts).toString('utf8');
        this.parts = [];
        this.held = 0;
        start = -1;
        try {
          frames.push({ kind: 'reply', value: JSON.parse(text) as unknown });
        } catch {
          frames.push({ kind: 'garbage', text: text.slice(0, 200) });
        }
      }
    }
    flushGarbage();
    if (this.depth > 0 && start >= 0) keep(chunk.length);
    return frames;
  }

  private reset(): void {
    this.parts = [];
    this.held = 0;
    this.oversized = false;
    this.depth = 0;
    this.inString = false;
    this.escaped = false;
  }
}
