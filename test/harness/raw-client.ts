/** A client that speaks the wire protocol byte by byte, for input no driver would send. */
import net from 'node:net';

export function startupPacket(params: Record<string, string>): Buffer {
  const body = Buffer.concat([...Object.entries(params).flatMap(([k, v]) => [Buffer.from(`${k}\0`), Buffer.from(`${v}\0`)]), Buffer.from([0])]);
  const head = Buffer.alloc(8);
  head.writeInt32BE(8 + body.length, 0);
  head.writeInt32BE(196608, 4); // protocol 3.0
  return Buffer.concat([head, body]);
}

export interface BackendMessage {
  type: string;
  body: Buffer;
}

/** A raw TCP client that collects every backend message until the proxy closes the connection. */
export class RawClient {
  readonly messages: BackendMessage[] = [];
  readonly closed: Promise<void>;
  private buf = Buffer.alloc(0);
  private waiters: (() => void)[] = [];
  private readonly socket: net.Socket;

  constructor(port: number) {
    this.socket = net.connect({ host: '127.0.0.1', port });
    this.socket.on('error', () => undefined);
    this.socket.on('data', (chunk: Buffer) => {
      this.buf = Buffer.concat([this.buf, chunk]);
      while (this.buf.length >= 5) {
        const len = this.buf.readInt32BE(1);
        if (this.buf.length < len + 1) break;
        this.messages.push({ type: String.fromCharCode(this.buf[0]), body: this.buf.subarray(5, len + 1) });
        this.buf = this.buf.subarray(len + 1);
      }
      for (const w of this.waiters.splice(0)) w();
    });
    this.closed = new Promise((resolve) => this.socket.on('close', () => resolve()));
    this.closed.then(() => {
      for (const w of this.waiters.splice(0)) w();
    });
  }

  connected(): Promise<void> {
    return new Promise((resolve) => (this.socket.connecting ? this.socket.once('connect', () => resolve()) : resolve()));
  }

  write(bytes: Buffer): void {
    this.socket.write(bytes);
  }

  /** Waits (up to 5 s) for a message of `type`. */
  async waitFor(type: string): Promise<BackendMessage> {
    const deadline = Date.now() + 5000;
    for (;;) {
      const found = this.messages.find((m) => m.type === type);
      if (found) return found;
      if (this.socket.destroyed || Date.now() > deadline) throw new Error(`no "${type}" message; got ${this.messages.map((m) => m.type).join(',')}`);
      await new Promise<void>((resolve) => {
        this.waiters.push(resolve);
        setTimeout(resolve, 100);
      });
    }
  }

  get isClosed(): boolean {
    return this.socket.destroyed;
  }

  /** Waits up to `timeoutMs` for `done()` to hold (checked as messages arrive); false when it never did. */
  async waitUntil(done: () => boolean, timeoutMs: number): Promise<boolean> {
    const deadline = Date.now() + timeoutMs;
    while (!done()) {
      if (Date.now() > deadline) return false;
      await new Promise<void>((resolve) => {
        this.waiters.push(resolve);
        setTimeout(resolve, 100);
      });
    }
    return true;
  }

  destroy(): void {
    this.socket.destroy();
  }
}

export function errorFields(body: Buffer): Record<string, string> {
  const fields: Record<string, string> = {};
  let o = 0;
  while (o < body.length && body[o] !== 0) {
    const end = body.indexOf(0, o + 1);
    fields[String.fromCharCode(body[o])] = body.toString('utf8', o + 1, end);
    o = end + 1;
  }
  return fields;
}
