// Serial console bytes → CRI log lines (`<RFC3339Nano> stdout F <line>\n`), the format the
// kubelet and crictl read. Works on bytes throughout: a line is cut into 16 KiB pieces (tag P,
// last one F) at a UTF-8 character boundary when there is one nearby, and bytes that are not
// UTF-8 pass through untouched on the Buffer API (pushBytes/flushBytes). The string API
// (push/flush) decodes the same bytes as UTF-8, so invalid bytes become U+FFFD there.
//
// Timestamps: fixed width, 9 fraction digits, UTC 'Z' (what containerd writes). Go's parser
// accepts it as RFC3339Nano, and fixed width keeps lines sortable as text; Date has millisecond
// resolution, so the last six digits are zero.
import { VmletError } from '../errors.js';

export const MAX_PIECE = 16 * 1024;

const NL = 0x0a;
const CR = 0x0d;

export function criTimestamp(d: Date): string {
  return d.toISOString().replace(/\.(\d{3})Z$/, '.$1000000Z');
}

export class CriLogFormatter {
  private pending: Buffer = Buffer.alloc(0);

  constructor(readonly stream: 'stdout' | 'stderr' = 'stdout') {}

  /** Bytes received but not yet written out (a partial line): a resumable reader re-reads these. */
  get pendingBytes(): number {
    return this.pending.length;
  }

  push(chunk: Buffer, now?: Date): string {
    return this.pushBytes(chunk, now).toString('utf8');
  }

  flush(now?: Date): string {
    return this.flushBytes(now).toString('utf8');
  }

  /** Complete lines in `chunk` (with what came before), plus full 16 KiB P pieces of a long partial line. */
  pushBytes(chunk: Buffer, now: Date = new Date()): Buffer {
    const ts = criTimestamp(now);
    const out: Buffer[] = [];
    let buf = this.pending.length ? Buffer.concat([this.pending, chunk]) : chunk;
    for (let nl = buf.indexOf(NL); nl !== -1; nl = buf.indexOf(NL)) {
      let end = nl;
      while (end > 0 && buf[end - 1] === CR) end--; // "\r\n" (and the "\r\r\n" a tty makes of it)
      this.emitLine(out, ts, buf.subarray(0, end));
      buf = buf.subarray(nl + 1);
    }
    // A long unterminated line: write full pieces now, keep less than a piece. A piece never
    // ends the buffer here, so its last byte is known not to be a "\r" before a "\n".
    while (buf.length > MAX_PIECE) {
      const cut = utf8Cut(buf, MAX_PIECE);
      out.push(this.line(ts, 'P', buf.subarray(0, cut)));
      buf = buf.subarray(cut);
    }
    this.pending = Buffer.from(buf); // copy: the caller may reuse its chunk buffer
    return Buffer.concat(out);
  }

  /** The pending partial line as a P line (a later "\n" completes it with an F line). */
  flushBytes(now: Date = new Date()): Buffer {
    let end = this.pending.length;
    while (end > 0 && this.pending[end - 1] === CR) end--; // a "\r" whose "\n" has not come yet
    const text = this.pending.subarray(0, end);
    this.pending = Buffer.alloc(0);
    return text.length ? this.line(criTimestamp(now), 'P', text) : Buffer.alloc(0);
  }

  private emitLine(out: Buffer[], ts: string, text: Buffer): void {
    while (text.length > MAX_PIECE) {
      const cut = utf8Cut(text, MAX_PIECE);
      out.push(this.line(ts, 'P', text.subarray(0, cut)));
      text = text.subarray(cut);
    }
    out.push(this.line(ts, 'F', text));
  }

  private line(ts: string, tag: 'P' | 'F', text: Buffer): Buffer {
    return Buffer.concat([Buffer.from(`${ts} ${this.stream} ${tag} `), text, Buffer.from('\n')]);
  }
}

/**
 * Where to cut `buf` at most `max` bytes in: moved back to the start of a UTF-8 character the
 * cut would split, when the bytes before it really form that character's start; else at max.
 */
export function utf8Cut(buf: Buffer, max: number): number {
  if (buf.length <= max) return buf.length;
  for (let back = 0; back < 4 && max - back > 0; back++) {
    const b = buf[max - back]!;
    if ((b & 0xc0) !== 0x80) {
      // b starts a character (or is ASCII / invalid). If it is a lead byte whose sequence crosses max, cut before it.
      if (back === 0) return max;
      const len = b >= 0xf5 ? 1 : b >= 0xf0 ? 4 : b >= 0xe0 ? 3 : b >= 0xc2 ? 2 : 1;
      return len > back ? max - back : max;
    }
  }
  return max; // only continuation bytes nearby: invalid UTF-8, cut anywhere
}

export interface CriLogLine {
  /** The timestamp as written. */
  timestamp: string;
  time: Date;
  stream: 'stdout' | 'stderr';
  tag: 'P' | 'F';
  partial: boolean;
  /** The line's content as bytes, and decoded as UTF-8. */
  bytes: Buffer;
  content: string;
}

const HEAD = /^(\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}(?:\.\d{1,9})?(?:Z|[+-]\d{2}:\d{2})) (stdout|stderr) ([^ ]*) /;

/** Parses one CRI log line (with or without its trailing "\n"); throws on a malformed line. */
export function parseCriLogLine(line: string | Buffer): CriLogLine {
  let bytes = typeof line === 'string' ? Buffer.from(line) : line;
  if (bytes[bytes.length - 1] === NL) bytes = bytes.subarray(0, -1);
  // The header is ASCII, so matching the latin1 view keeps byte offsets exact.
  const m = HEAD.exec(bytes.toString('latin1', 0, Math.min(bytes.length, 96)));
  if (!m) throw new VmletError('internal', `not a CRI log line: ${JSON.stringify(bytes.toString('utf8', 0, 120))}`);
  const [head, timestamp, stream, tags] = m as unknown as [string, string, 'stdout' | 'stderr', string];
  // Tags are ':'-separated; P or F is the one the kubelet reads.
  const tag = tags.split(':').includes('P') ? 'P' : 'F';
  const time = new Date(timestamp.replace(/(\.\d{3})\d*/, '$1'));
  if (Number.isNaN(time.getTime())) throw new VmletError('internal', `bad CRI log timestamp ${timestamp}`);
  const body = bytes.subarray(head.length);
  return { timestamp, time, stream, tag, partial: tag === 'P', bytes: body, content: body.toString('utf8') };
}
