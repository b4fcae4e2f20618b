import { mkdir, open, readdir, rename, type FileHandle } from 'node:fs/promises';
import path from 'node:path';
import { rotatedName, rotationNumbers } from './files.js';
import { GENESIS, checkpointHmac, lineHash, type AuditEvent } from './record.js';

export type { AuditEvent, AuditKind } from './record.js';

export interface AuditLogOptions {
  file: string;
  /** When set, checkpoint records carry an HMAC with this key (see record.ts for why). */
  checkpointKey?: string;
  /** Event records between checkpoints (default 1000); only used with a key. */
  checkpointEvery?: number;
  /** Rotate before a record would take the file beyond this many bytes. */
  maxBytes?: number;
}

/** Where the chain left off: the next seq and the hash the next record must point at. */
interface ChainTail {
  seq: number;
  prev: string;
  lastWasCheckpoint: boolean;
}

/** Marks where in the write queue the file is rotated. */
const ROTATE = Symbol('rotate');

/** Backwards read size when looking for the last line of an existing file. */
const TAIL_CHUNK = 64 * 1024;

/**
 * Append-only, hash-chained audit log (one JSON record per line, format in record.ts).
 *
 * `append` builds, hashes and queues the record synchronously, so records are chained in
 * call order; a single write chain writes the queue in batches. One process writes a file:
 * two writers would fork the chain. A failed write makes the log fail closed: later
 * `append` calls throw the error and `close()` rejects with it, rather than dropping
 * records silently.
 */
export class AuditLog {
  private readonly pending: (string | typeof ROTATE)[] = [];
  private written: Promise<void> = Promise.resolve();
  private flushQueued = false;
  private failure: Error | undefined;
  private closing: Promise<void> | undefined;
  private sinceCheckpoint = 0;

  private constructor(
    private readonly file: string,
    private readonly key: string | undefined,
    private readonly checkpointEvery: number,
    private readonly maxBytes: number,
    private handle: FileHandle | undefined,
    private tail: ChainTail,
    /** Bytes of the current file, counting queued records. */
    private size: number,
    private nextRotation: number,
  ) {}

  static async open(opts: AuditLogOptions): Promise<AuditLog> {
    const every = opts.checkpointEvery ?? 1000;
    if (!Number.isSafeInteger(every) || every < 1) throw new RangeError(`checkpointEvery must be a positive integer, got ${every}`);
    if (opts.maxBytes !== undefined && !(opts.maxBytes > 0)) throw new RangeError(`maxBytes must be positive, got ${opts.maxBytes}`);
    if (opts.checkpointKey === '') throw new RangeError('checkpointKey must not be empty');

    const dir = path.dirname(opts.file);
    await mkdir(dir, { recursive: true });
    const newestRotation = rotationNumbers(opts.file, await readdir(dir)).pop();
    const current = await readLastLine(opts.file);
    // No records in the file itself (new, or a crash right after a rotation): the chain
    // continues from the newest rotated file, if any.
    const from = current !== undefined || newestRotation === undefined ? opts.file : rotatedName(opts.file, newestRotation);
    const last = from === opts.file ? current : await readLastLine(from);
    const tail = last === undefined ? { seq: 1, prev: GENESIS, lastWasCheckpoint: false } : continueAfter(last.line, from);
    const handle = await open(opts.file, 'a');
    const log = new AuditLog(opts.file, opts.checkpointKey, every, opts.maxBytes ?? Infinity, handle, tail, current?.size ?? 0, (newestRotation ?? 0) + 1);
    // After an unclean close the records since the last checkpoint are not counted: close that
    // stretch now, so no run without a checkpoint is longer than checkpointEvery.
    if (opts.checkpointKey !== undefined && tail.prev !== GENESIS && !tail.lastWasCheckpoint) log.checkpoint(opts.checkpointKey);
    return log;
  }

  append(event: AuditEvent): void {
    if (this.closing !== undefined) throw new Error(`audit log ${this.file} is closed`);
    if (this.failure !== undefined) throw this.failure;
    this.push({ event });
    if (this.key !== undefined && ++this.sinceCheckpoint >= this.checkpointEvery) this.checkpoint(this.key);
  }

  /** Writes a final checkpoint (with a key), flushes, fsyncs and closes the file. */
  close(): Promise<void> {
    this.closing ??= this.finish();
    return this.closing;
  }

  private async finish(): Promise<void> {
    if (this.key !== undefined && this.failure === undefined && this.tail.prev !== GENESIS && !this.tail.lastWasCheckpoint) this.checkpoint(this.key);
    await this.written;
    const handle = this.handle;
    this.handle = undefined;
    if (handle !== undefined) {
      try {
        if (this.failure === undefined) await handle.sync();
      } finally {
        await handle.close();
      }
    }
    if (this.failure !== undefined) throw this.failure;
  }

  private checkpoint(key: string): void {
    this.push({ checkpoint: { hmac: checkpointHmac(key, this.tail.prev) } });
    this.sinceCheckpoint = 0;
  }

  /** Serializes first: an event JSON cannot represent (a BigInt, a cycle) throws before any state changes. */
  private push(body: { event: AuditEvent } | { checkpoint: { hmac: string } }): void {
    const line = JSON.stringify({ seq: this.tail.seq, time: new Date().toISOString(), prev: this.tail.prev, ...body });
    const bytes = Buffer.byteLength(line) + 1;
    if (this.size > 0 && this.size + bytes > this.maxBytes) {
      this.pending.push(ROTATE);
      this.size = 0;
    }
    this.pending.push(line + '\n');
    this.size += bytes;
    this.tail = { seq: this.tail.seq + 1, prev: lineHash(line), lastWasCheckpoint: 'checkpoint' in body };
    if (!this.flushQueued) {
      this.flushQueued = true;
      this.written = this.written.then(() => this.flush());
    }
  }

  /** Writes everything queued so far; records appended meanwhile get the next flush. */
  private async flush(): Promise<void> {
    this.flushQueued = false;
    const batch = this.pending.splice(0);
    if (this.failure !== undefined) return;
    try {
      let text = '';
      for (const item of batch) {
        if (item !== ROTATE) {
          text += item;
          continue;
        }
        await this.write(text);
        text = '';
        await this.rotate();
      }
      await this.write(text);
    } catch (err) {
      this.failure = err as Error;
    }
  }

  private async write(text: string): Promise<void> {
    if (text === '') return;
    if (this.handle === undefined) throw new Error(`audit log ${this.file} has no open file`);
    // appendFile loops until every byte is written; the file is opened with O_APPEND.
    await this.handle.appendFile(text);
  }

  /** The new file's first record already points at the old file's last one: the chain goes on. */
  private async rotate(): Promise<void> {
    const handle = this.handle;
    this.handle = undefined;
    if (handle !== undefined) {
      await handle.sync();
      await handle.close();
    }
    await rename(this.file, rotatedName(this.file, this.nextRotation++));
    this.handle = await open(this.file, 'a');
  }
}

/** The chain position after `line`, the last record already in a file. */
function continueAfter(line: Buffer, file: string): ChainTail {
  let record: unknown;
  try {
    record = JSON.parse(line.toString('utf8'));
  } catch {
    record = undefined;
  }
  const seq = (record as { seq?: unknown } | undefined)?.seq;
  if (typeof seq !== 'number' || !Number.isSafeInteger(seq) || seq < 1) {
    throw new Error(`${file}: the last line is not an audit record; check it with "pgtenant audit verify" and move the file aside`);
  }
  return { seq: seq + 1, prev: lineHash(line), lastWasCheckpoint: typeof (record as { checkpoint?: unknown }).checkpoint === 'object' };
}

/**
 * The last line of `file` (without its newline) and the file's size, reading backwards
 * from the end so a large log is not read whole; undefined when the file is missing or empty.
 */
async function readLastLine(file: string): Promise<{ line: Buffer; size: number } | undefined> {
  let handle: FileHandle;
  try {
    handle = await open(file, 'r');
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'ENOENT') return undefined;
    throw err;
  }
  try {
    const { size } = await handle.stat();
    if (size === 0) return undefined;
    const last = Buffer.alloc(1);
    await handle.read(last, 0, 1, size - 1);
    // A torn write is evidence too: refuse to continue rather than bury or truncate it.
    if (last[0] !== 0x0a) throw new Error(`${file} ends with an incomplete record (a write was cut short); check it with "pgtenant audit verify" and move the file aside`);
    const parts: Buffer[] = [];
    let end = size - 1;
    while (end > 0) {
      const start = Math.max(0, end - TAIL_CHUNK);
      const chunk = Buffer.alloc(end - start);
      await handle.read(chunk, 0, chunk.length, start);
      const newline = chunk.lastIndexOf(0x0a);
      if (newline >= 0) {
        parts.unshift(chunk.subarray(newline + 1));
        break;
      }
      parts.unshift(chunk);
      end = start;
    }
    return { line: Buffer.concat(parts), size };
  } finally {
    await handle.close();
  }
}
