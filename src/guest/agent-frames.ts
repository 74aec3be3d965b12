// Frames of the vmlet guest agent protocol (docs/guest-agent.md): u32 BE length (type + stream +
// payload), u8 type, u32 BE stream, payload. The decoder refuses a length outside 5..1 MiB + 5
// before buffering anything, so a corrupt or hostile stream cannot make it hold more than one frame.
import { VmletError } from '../errors.js';

export const FrameType = {
  REQUEST: 1,
  RESPONSE: 2,
  EVENT: 3,
  STDIN: 4,
  STDOUT: 5,
  STDERR: 6,
  CLOSE_STDIN: 7,
  ACK: 8,
} as const;
export type FrameTypeValue = (typeof FrameType)[keyof typeof FrameType];

export const FRAME_HEADER = 5;
export const MAX_FRAME_LENGTH = 1024 * 1024 + FRAME_HEADER;
/** Largest STDIN/STDOUT/STDERR payload. */
export const MAX_STREAM_CHUNK = 32 * 1024;
/** Unacknowledged output bytes the agent sends per stream. */
export const STREAM_WINDOW = 256 * 1024;

export interface Frame {
  type: number;
  stream: number;
  payload: Buffer;
}

export function encodeFrame(type: number, stream: number, payload: Buffer = Buffer.alloc(0)): Buffer {
  const length = FRAME_HEADER + payload.length;
  if (length > MAX_FRAME_LENGTH) {
    throw new VmletError('internal', `guest agent frame of ${length} bytes exceeds ${MAX_FRAME_LENGTH}`);
  }
  const head = Buffer.alloc(4 + FRAME_HEADER);
  head.writeUInt32BE(length, 0);
  head.writeUInt8(type, 4);
  head.writeUInt32BE(stream >>> 0, 5);
  return Buffer.concat([head, payload]);
}

/** Incremental decoder: push() chunks as they arrive, get the complete frames. */
export class FrameDecoder {
  private chunks: Buffer[] = [];
  private size = 0;

  /** Throws VmletError('internal') on a length outside the protocol's bounds; the connection is then unusable. */
  push(chunk: Buffer): Frame[] {
    if (chunk.length) {
      this.chunks.push(chunk);
      this.size += chunk.length;
    }
    const frames: Frame[] = [];
    while (this.size >= 4) {
      const length = this.peekLength();
      if (length < FRAME_HEADER || length > MAX_FRAME_LENGTH) {
        throw new VmletError('internal', `guest agent frame length ${length} outside ${FRAME_HEADER}..${MAX_FRAME_LENGTH}`);
      }
      if (this.size < 4 + length) break;
      const buf = this.take(4 + length);
      frames.push({ type: buf.readUInt8(4), stream: buf.readUInt32BE(5), payload: buf.subarray(4 + FRAME_HEADER) });
    }
    return frames;
  }

  /** Bytes held for a frame not complete yet. */
  get buffered(): number {
    return this.size;
  }

  private peekLength(): number {
    const first = this.chunks[0]!;
    if (first.length >= 4) return first.readUInt32BE(0);
    return Buffer.concat(this.chunks, 4).readUInt32BE(0);
  }

  private take(n: number): Buffer {
    const first = this.chunks[0]!;
    let out: Buffer;
    if (first.length >= n) {
      out = first.subarray(0, n);
      if (first.length === n) this.chunks.shift();
      else this.chunks[0] = first.subarray(n);
    } else {
      const all = Buffer.concat(this.chunks, this.size);
      out = all.subarray(0, n);
      this.chunks = all.length > n ? [all.subarray(n)] : [];
    }
    this.size -= n;
    return out;
  }
}
