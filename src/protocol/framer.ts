import { PgError, SqlState } from './sqlstate.js';

/**
 * Receives framed messages. Views passed in are slices of socket chunks that are never reused,
 * so a handler may keep them (e.g. to forward later) without copying.
 */
export interface FrameHandler {
  /** A whole message in buf[start, end), including its type byte and length. */
  message(type: number, buf: Buffer, start: number, end: number): void;
  /**
   * A message too large to hold whole: `head` holds its first bytes (header included, at least the
   * framer's streaming threshold); the rest follows as parts.
   */
  largeStart(type: number, totalLength: number, head: Buffer): void;
  largePart(buf: Buffer, start: number, end: number, last: boolean): void;
}

/** Largest message Postgres itself accepts (1 GB), plus header. */
const MAX_MESSAGE = 0x40000000 + 5;

/**
 * Splits a byte stream into messages by type + length. Small messages come whole; messages of a
 * streamable type larger than `threshold` come as head + parts, so a 500 MB DataRow is never buffered.
 */
export class Framer {
  /** Bytes of a message whose header arrived but not yet all of its body (or of a large message's head). */
  private acc: Buffer | null = null;
  private accFilled = 0;
  /** The message being accumulated into `acc` is a large one; `acc` is only its head. */
  private accIsHead = false;
  private accTotal = 0;
  /** Fewer than 5 bytes of a header. */
  private headerBytes: Buffer | null = null;
  private largeRemaining = 0;

  constructor(
    private readonly handler: FrameHandler,
    /** streamable[type] = 1 for types that may arrive as head + parts. */
    private readonly streamable: Uint8Array,
    private readonly threshold = 256 * 1024,
  ) {}

  /** Throws PgError(08P01) on a malformed length. */
  push(chunk: Buffer): void {
    let off = 0;
    if (this.largeRemaining > 0) {
      const n = Math.min(this.largeRemaining, chunk.length);
      this.largeRemaining -= n;
      this.handler.largePart(chunk, 0, n, this.largeRemaining === 0);
      off = n;
      if (off === chunk.length) return;
    }
    if (this.acc !== null) {
      const want = this.acc.length - this.accFilled;
      const n = Math.min(want, chunk.length - off);
      chunk.copy(this.acc, this.accFilled, off, off + n);
      this.accFilled += n;
      off += n;
      if (this.accFilled < this.acc.length) return;
      const acc = this.acc;
      this.acc = null;
      if (this.accIsHead) {
        this.largeRemaining = this.accTotal - acc.length;
        this.handler.largeStart(acc[0], this.accTotal, acc);
        if (off < chunk.length) this.push(chunk.subarray(off));
        return;
      }
      this.handler.message(acc[0], acc, 0, acc.length);
      if (off === chunk.length) return;
    }
    if (this.headerBytes !== null) {
      chunk = Buffer.concat([this.headerBytes, chunk.subarray(off)]);
      this.headerBytes = null;
      off = 0;
    }
    this.scan(chunk, off);
  }

  private scan(buf: Buffer, off: number): void {
    const len = buf.length;
    while (off < len) {
      const avail = len - off;
      if (avail < 5) {
        this.headerBytes = Buffer.from(buf.subarray(off));
        return;
      }
      const type = buf[off];
      const length = buf.readInt32BE(off + 1);
      if (length < 4 || length + 1 > MAX_MESSAGE) {
        throw new PgError(SqlState.ProtocolViolation, `invalid message length ${length} for message type "${String.fromCharCode(type)}"`, 'FATAL');
      }
      const total = length + 1;
      if (total <= avail) {
        this.handler.message(type, buf, off, off + total);
        off += total;
        continue;
      }
      if (total > this.threshold && this.streamable[type] === 1) {
        if (avail >= this.threshold) {
          this.largeRemaining = total - avail;
          this.handler.largeStart(type, total, buf.subarray(off));
          return;
        }
        this.startAccumulating(buf, off, this.threshold, total, true);
        return;
      }
      this.startAccumulating(buf, off, total, total, false);
      return;
    }
  }

  private startAccumulating(buf: Buffer, off: number, size: number, total: number, isHead: boolean): void {
    this.acc = Buffer.allocUnsafe(size);
    this.accFilled = buf.copy(this.acc, 0, off);
    this.accIsHead = isHead;
    this.accTotal = total;
  }
}

export function typeSet(...types: number[]): Uint8Array {
  const set = new Uint8Array(256);
  for (const t of types) set[t] = 1;
  return set;
}
