/** What the server still owes, one entry per request sent (or answered by the proxy), in order. */
export const Request = {
  Parse: 1,
  Bind: 2,
  Describe: 3,
  Execute: 4,
  Close: 5,
  /** Sync, simple Query and FunctionCall: all end with ReadyForQuery. */
  Sync: 6,
} as const;
export type RequestKind = (typeof Request)[keyof typeof Request];

/** The proxy sent this itself: swallow its responses (errors of an injected Parse still reach the client). */
export const SKIP = 0x10;
/** The proxy answers this itself (ParseComplete/CloseComplete) when it reaches the head of the queue. */
export const SYNTHETIC = 0x20;
/** A simple Query or FunctionCall: errors inside it do not discard later requests. */
export const SIMPLE = 0x40;

const KIND_MASK = 0x0f;

/** Ring buffer of pending requests; a statement name rides along with Parse entries. */
export class PendingRequests {
  private flags = new Uint8Array(64);
  private names: (string | undefined)[] = new Array(64);
  private head = 0;
  private count = 0;

  get length(): number {
    return this.count;
  }

  push(kind: RequestKind, flags = 0, name?: string): void {
    if (this.count === this.flags.length) this.grow();
    const i = (this.head + this.count) & (this.flags.length - 1);
    this.flags[i] = kind | flags;
    this.names[i] = name;
    this.count++;
  }

  /** Kind of the oldest entry, or 0 when none. */
  headKind(): number {
    return this.count === 0 ? 0 : this.flags[this.head] & KIND_MASK;
  }

  headFlags(): number {
    return this.count === 0 ? 0 : this.flags[this.head] & ~KIND_MASK;
  }

  headName(): string | undefined {
    return this.count === 0 ? undefined : this.names[this.head];
  }

  shift(): void {
    if (this.count === 0) return;
    this.names[this.head] = undefined;
    this.head = (this.head + 1) & (this.flags.length - 1);
    this.count--;
  }

  /** Counts entries of `kind` (e.g. outstanding Syncs). */
  countKind(kind: RequestKind): number {
    let n = 0;
    for (let k = 0; k < this.count; k++) if ((this.flags[(this.head + k) & (this.flags.length - 1)] & KIND_MASK) === kind) n++;
    return n;
  }

  clear(): void {
    while (this.count > 0) this.shift();
  }

  private grow(): void {
    const size = this.flags.length * 2;
    const flags = new Uint8Array(size);
    const names: (string | undefined)[] = new Array(size);
    for (let k = 0; k < this.count; k++) {
      const from = (this.head + k) & (this.flags.length - 1);
      flags[k] = this.flags[from];
      names[k] = this.names[from];
    }
    this.flags = flags;
    this.names = names;
    this.head = 0;
  }
}
