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
/** A statement the guard refused: the server fails it on purpose, the client sees the payload error instead. */
export const BLOCKED = 0x80;
/** Part of the tenant binding: if it fails, the server connection cannot be trusted. */
export const BINDING = 0x100;
/** The BEGIN of a transaction pgtenant already confirmed to the client: if it fails, the client cannot go on. */
export const TX_START = 0x200;

const KIND_MASK = 0x0f;

/** Ring buffer of pending requests; a statement name (Parse) or replacement error (BLOCKED) rides along. */
export class PendingRequests {
  private flags = new Uint16Array(64);
  private extras: (string | Buffer | undefined)[] = new Array(64);
  /** Whose request each entry is (shared connections serve several clients at once). */
  private owners: unknown[] = new Array(64);
  /** Owner recorded for entries pushed from now on. */
  currentOwner: unknown = undefined;
  /**
   * Extended-protocol requests went to the server with no Sync after them: it holds their implicit
   * transaction open (or, after an error, ignores everything) until a Sync comes.
   */
  private unsynced = false;
  /** The server failed an extended-protocol request and ignores everything up to the next Sync. */
  private ignoring = false;
  private head = 0;
  private count = 0;

  get length(): number {
    return this.count;
  }

  /** Extended-protocol requests were sent and no Sync after them yet. */
  get awaitingSync(): boolean {
    return this.unsynced;
  }

  /** The server failed an extended-protocol request with no Sync pending after it: what is sent now is ignored up to a Sync. */
  ignoreUntilSync(): void {
    this.ignoring = true;
  }

  /** Records a request sent; false when the server ignores it (after a failed one, up to a Sync): nothing is recorded then. */
  push(kind: RequestKind, flags = 0, extra?: string | Buffer): boolean {
    // A simple Query or FunctionCall is no Sync: after a failed extended-protocol request the server ignores it.
    const sync = kind === Request.Sync && (flags & SIMPLE) === 0;
    // Nothing will answer it (nor may the proxy: the server would not have).
    if (this.ignoring && !sync) return false;
    if (sync) {
      this.unsynced = false;
      this.ignoring = false;
    } else if (kind !== Request.Sync && (flags & SYNTHETIC) === 0) this.unsynced = true;
    if (this.count === this.flags.length) this.grow();
    const i = (this.head + this.count) & (this.flags.length - 1);
    this.flags[i] = kind | flags;
    this.extras[i] = extra;
    this.owners[i] = this.currentOwner;
    this.count++;
    return true;
  }

  /** Kind of the oldest entry, or 0 when none. */
  headKind(): number {
    return this.count === 0 ? 0 : this.flags[this.head] & KIND_MASK;
  }

  headFlags(): number {
    return this.count === 0 ? 0 : this.flags[this.head] & ~KIND_MASK;
  }

  headName(): string | undefined {
    const e = this.count === 0 ? undefined : this.extras[this.head];
    return typeof e === 'string' ? e : undefined;
  }

  headOwner(): unknown {
    return this.count === 0 ? undefined : this.owners[this.head];
  }

  /**
   * Where `owner`'s entries stand among the others': 'none' pending, 'alone' (every entry is its),
   * 'others-ahead' (only entries before its first are someone else's), 'others-behind'.
   */
  standing(owner: unknown): 'none' | 'alone' | 'others-ahead' | 'others-behind' {
    const mask = this.flags.length - 1;
    let seenOwn = false;
    let others = false;
    for (let k = 0; k < this.count; k++) {
      const own = this.owners[(this.head + k) & mask] === owner;
      if (own) seenOwn = true;
      else if (seenOwn) return 'others-behind';
      else others = true;
    }
    return !seenOwn ? 'none' : others ? 'others-ahead' : 'alone';
  }

  /** Every owner with an entry still pending, once each. */
  pendingOwners(): unknown[] {
    const seen = new Set<unknown>();
    for (let k = 0; k < this.count; k++) seen.add(this.owners[(this.head + k) & (this.flags.length - 1)]);
    seen.delete(undefined);
    return [...seen];
  }

  headPayload(): Buffer | undefined {
    const e = this.count === 0 ? undefined : this.extras[this.head];
    return Buffer.isBuffer(e) ? e : undefined;
  }

  shift(): void {
    if (this.count === 0) return;
    this.extras[this.head] = undefined;
    this.owners[this.head] = undefined;
    this.head = (this.head + 1) & (this.flags.length - 1);
    this.count--;
  }

  /** Counts entries of `kind` (e.g. outstanding Syncs). */
  countKind(kind: RequestKind): number {
    let n = 0;
    for (let k = 0; k < this.count; k++) if ((this.flags[(this.head + k) & (this.flags.length - 1)] & KIND_MASK) === kind) n++;
    return n;
  }

  private grow(): void {
    const size = this.flags.length * 2;
    const flags = new Uint16Array(size);
    const extras: (string | Buffer | undefined)[] = new Array(size);
    const owners: unknown[] = new Array(size);
    for (let k = 0; k < this.count; k++) {
      const from = (this.head + k) & (this.flags.length - 1);
      flags[k] = this.flags[from];
      extras[k] = this.extras[from];
      owners[k] = this.owners[from];
    }
    this.flags = flags;
    this.extras = extras;
    this.owners = owners;
    this.head = 0;
  }
}
