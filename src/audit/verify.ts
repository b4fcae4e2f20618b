import { closeSync, openSync, readSync } from 'node:fs';
import { GENESIS, checkpointHmac, lineHash } from './record.js';

export type VerifyResult = { ok: true; records: number } | { ok: false; file: string; line: number; seq?: number; reason: string };

/** The record a link was checked against, to name it when the link is broken. */
interface Previous {
  seq: number;
  hash: string;
  file: string;
  line: number;
}

/** What shapeProblem has checked. */
interface ParsedRecord {
  seq: number;
  prev: string;
  checkpoint?: { hmac: string };
}

interface ChainLine {
  file: string;
  /** 1-based, within `file`. */
  line: number;
  bytes: Buffer;
  /** False only for a last line without its newline: a write cut short, or bytes tacked on. */
  terminated: boolean;
}

const READ_CHUNK = 1 << 20;
const HEX64 = /^[0-9a-f]{64}$/;

/**
 * Checks a chain spread over `files`, given oldest first, and reports the first record that
 * breaks it. Every record is checked in order: a complete line, valid JSON, the record
 * shape, seq one more than the previous record's, prev equal to the hash of the previous
 * record's line (in the previous file, across a rotation), and with `checkpointKey` each
 * checkpoint's HMAC. The chain must start at seq 1 with the genesis prev, so records cut
 * from its start are found too. With a key, checkpoints must also be there: once one has
 * appeared, at most `checkpointEvery` records may follow without one, and a chain with none at all
 * may hold no more than that (a key set later leaves the records before it without checkpoints).
 * Otherwise checkpoints were stripped from a rewritten chain.
 *
 * A changed record whose JSON is still valid cannot be told from the record itself: the
 * break shows at the next record, whose prev no longer matches. The record after the break
 * tells which side changed (see `brokenLink`). The last record has no successor; a change
 * to it is only found if a checkpoint follows and a key is given. Unreadable files throw:
 * that is not a broken chain.
 */
export function verifyAuditFiles(files: string[], checkpointKey?: string, checkpointEvery = 1000): VerifyResult {
  if (!Number.isSafeInteger(checkpointEvery) || checkpointEvery < 1) throw new RangeError(`checkpointEvery must be a positive integer, got ${checkpointEvery}`);
  const lines = chainLines(files);
  try {
    return check(lines, checkpointKey, checkpointEvery);
  } finally {
    lines.return(undefined); // closes the file being read when a break ends the walk early
  }
}

function check(lines: Generator<ChainLine>, checkpointKey: string | undefined, every: number): VerifyResult {
  let previous: Previous | undefined;
  let records = 0;
  let lastCheckpoint: number | undefined;
  let sinceCheckpoint = 0;
  for (let next = lines.next(); !next.done; next = lines.next()) {
    const { file, line, bytes } = next.value;
    const parsed = parseLine(next.value);
    const broken = (reason: string, seq?: number): VerifyResult => ({ ok: false, file, line, seq, reason });
    if ('problem' in parsed) return broken(parsed.problem, parsed.seq);
    const { seq, prev, checkpoint } = parsed;
    const hash = lineHash(bytes); // before reading on: the next read may reuse the buffer

    if (previous === undefined) {
      if (seq !== 1) return broken(`the chain starts at seq ${seq}, not 1: earlier records are missing`, seq);
      if (prev !== GENESIS) return broken('the first record of the chain does not have the genesis prev (64 zeros): earlier records are missing', seq);
    } else {
      if (seq !== previous.seq + 1) return broken(`seq ${seq} follows ${previous.seq}`, seq);
      if (prev !== previous.hash) return broken(brokenLink(previous, file, hash, lines.next()), seq);
    }
    if (checkpoint !== undefined && checkpointKey !== undefined && checkpoint.hmac !== checkpointHmac(checkpointKey, prev)) {
      return broken('checkpoint HMAC does not match: a different key, or the records before it were rewritten', seq);
    }
    if (checkpoint !== undefined) {
      lastCheckpoint = seq;
      sinceCheckpoint = 0;
    } else if (++sinceCheckpoint > every && checkpointKey !== undefined && lastCheckpoint !== undefined) {
      return broken(`${sinceCheckpoint} records follow the checkpoint at seq ${lastCheckpoint} without another (at most ${every}, audit.checkpointEvery): checkpoints were removed, or the chain after them rewritten`, seq);
    }
    previous = { seq, hash, file, line };
    records++;
  }
  if (checkpointKey !== undefined && lastCheckpoint === undefined && previous !== undefined && records > every) {
    return { ok: false, file: previous.file, line: previous.line, seq: previous.seq, reason: `no checkpoint in ${records} records (one is written every ${every}, audit.checkpointEvery): checkpoints were removed, or the chain was written without the key` };
  }
  return { ok: true, records };
}

/**
 * The reason for a record whose prev does not match the previous record. If the record after
 * it still links to it, this record is as written and the previous one changed (or records
 * after that one were cut, and the rest renumbered); if not, this record itself changed.
 */
function brokenLink(previous: Previous, file: string, hash: string, after: IteratorResult<ChainLine>): string {
  const where = previous.file === file ? `line ${previous.line}` : `${previous.file} line ${previous.line}`;
  const successor = after.done ? undefined : parseLine(after.value);
  if (successor === undefined || 'problem' in successor) {
    return `prev hash does not match record ${previous.seq} (${where}): record ${previous.seq} or this record was altered, or records between them removed`;
  }
  if (successor.prev === hash) return `prev hash does not match record ${previous.seq} (${where}): record ${previous.seq} was altered, or records after it removed`;
  return `this record was altered: its prev does not match record ${previous.seq} (${where}), and the next record does not link to it`;
}

/** The record on `line`, or why it is not one. */
function parseLine({ bytes, terminated }: ChainLine): ParsedRecord | { problem: string; seq?: number } {
  if (!terminated) return { problem: 'record does not end with a newline (an incomplete write, or bytes added after the last record)' };
  if (bytes.length === 0) return { problem: 'empty line where a record should be' };
  let record: unknown;
  try {
    record = JSON.parse(bytes.toString('utf8'));
  } catch {
    return { problem: 'record is not valid JSON' };
  }
  const problem = shapeProblem(record);
  if (problem === undefined) return record as ParsedRecord;
  const seq = (record as { seq?: unknown } | null)?.seq;
  return { problem, seq: typeof seq === 'number' ? seq : undefined };
}

/** Why `record` is not an audit record, or undefined when it has the right shape. */
function shapeProblem(record: unknown): string | undefined {
  if (typeof record !== 'object' || record === null || Array.isArray(record)) return 'record is not a JSON object';
  const r = record as Record<string, unknown>;
  if (typeof r.seq !== 'number' || !Number.isSafeInteger(r.seq) || r.seq < 1) return 'record has no valid seq';
  if (typeof r.time !== 'string' || Number.isNaN(Date.parse(r.time))) return 'record has no valid time';
  if (typeof r.prev !== 'string' || !HEX64.test(r.prev)) return 'record has no valid prev hash';
  if ((r.event === undefined) === (r.checkpoint === undefined)) return 'record must have exactly one of event and checkpoint';
  if (r.event !== undefined && typeof (r.event as { kind?: unknown } | null)?.kind !== 'string') return 'record has an event without a kind';
  if (r.checkpoint !== undefined && !HEX64.test(String((r.checkpoint as { hmac?: unknown } | null)?.hmac))) return 'checkpoint has no valid hmac';
  return undefined;
}

/** The lines of every file in turn. */
function* chainLines(files: string[]): Generator<ChainLine> {
  for (const file of files) {
    let line = 0;
    for (const { bytes, terminated } of readLines(file)) yield { file, line: ++line, bytes, terminated };
  }
}

/**
 * The lines of `file` in chunks, so a large log is never held whole. A yielded buffer may
 * share memory with the next read: use it before asking for the next line.
 */
function* readLines(file: string): Generator<{ bytes: Buffer; terminated: boolean }> {
  const fd = openSync(file, 'r');
  try {
    const chunk = Buffer.alloc(READ_CHUNK);
    let carry = Buffer.alloc(0);
    for (;;) {
      const n = readSync(fd, chunk, 0, chunk.length, null);
      if (n === 0) break;
      const data = carry.length > 0 ? Buffer.concat([carry, chunk.subarray(0, n)]) : chunk.subarray(0, n);
      let start = 0;
      for (let newline = data.indexOf(0x0a); newline !== -1; newline = data.indexOf(0x0a, start)) {
        yield { bytes: data.subarray(start, newline), terminated: true };
        start = newline + 1;
      }
      carry = Buffer.from(data.subarray(start));
    }
    if (carry.length > 0) yield { bytes: carry, terminated: false };
  } finally {
    closeSync(fd);
  }
}
