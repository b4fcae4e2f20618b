import type { Socket } from 'node:net';

/**
 * Collects bytes bound for one socket and writes them once per turn of the event loop: adjacent
 * slices of the same chunk merge into one, several slices go out as one writev.
 */
export class Outbox {
  private bufs: Buffer[] = [];
  private lastBuf: Buffer | null = null;
  private lastStart = 0;
  private lastEnd = 0;
  private scheduled = false;
  private readonly flushNow = (): void => this.flush();
  /**
   * Flush once per event-loop turn (setImmediate) instead of after the current callback: bytes
   * queued while handling every socket that was readable in this turn go out in one write. For a
   * connection many clients pipeline on; a client's own connection keeps the lower latency.
   */
  perTurn = false;

  constructor(
    private socket: Socket,
    /** Called when the socket's buffer is full; `drain` follows when it empties. */
    private readonly onFull: () => void,
  ) {}

  /** Forward buf[start, end) — kept as a view, never copied. */
  slice(buf: Buffer, start: number, end: number): void {
    if (start === end) return;
    if (this.lastBuf === buf && this.lastEnd === start) {
      this.lastEnd = end;
    } else {
      this.seal();
      this.lastBuf = buf;
      this.lastStart = start;
      this.lastEnd = end;
    }
    this.schedule();
  }

  push(buf: Buffer): void {
    this.slice(buf, 0, buf.length);
  }

  get pendingBytes(): number {
    let n = this.lastEnd - this.lastStart;
    for (const b of this.bufs) n += b.length;
    return n;
  }

  flush(): void {
    this.scheduled = false;
    this.seal();
    const bufs = this.bufs;
    if (bufs.length === 0) return;
    this.bufs = [];
    const socket = this.socket;
    if (socket.destroyed) return;
    let ok = true;
    if (bufs.length === 1) {
      ok = socket.write(bufs[0]);
    } else {
      socket.cork();
      for (const b of bufs) ok = socket.write(b);
      socket.uncork();
    }
    if (!ok) this.onFull();
  }

  private seal(): void {
    if (this.lastBuf === null) return;
    this.bufs.push(this.lastStart === 0 && this.lastEnd === this.lastBuf.length ? this.lastBuf : this.lastBuf.subarray(this.lastStart, this.lastEnd));
    this.lastBuf = null;
    this.lastStart = this.lastEnd = 0;
  }

  private schedule(): void {
    if (this.scheduled) return;
    this.scheduled = true;
    if (this.perTurn) setImmediate(this.flushNow);
    else queueMicrotask(this.flushNow);
  }

  /** After a TLS upgrade the same session writes to the new socket. */
  retarget(socket: Socket): void {
    this.socket = socket;
  }
}
