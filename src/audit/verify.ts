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

interface Line {
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
 * from its start are found too.
 *
 * A changed record whose JSON is still valid cannot be told from the record itself: the
 * break shows at the next record, whose prev no longer matches, and the reason names the
 * changed record. The last record has no successor; a change to it is only found if a
 * checkpoint follows and a key is given. Unreadable files throw: that is not a broken chain.
 */
export function verifyAuditFiles(files: string[], checkpointKey?: string): VerifyResult {
  let previous: Previous | undefined;
  let records = 0;
  for (const file of files) {
    let lineNo = 0;
    for (const { bytes, terminated } of readLines(file)) {
      lineNo++;
      const broken = (reason: string, seq?: number): VerifyResult => ({ ok: false, file, line: lineNo, seq, reason });
      if (!terminated) return broken('record does not end with a newline (an incomplete write, or bytes added after the last record)');
      if (bytes.length === 0) return broken('empty line where a record should be');
      let record: unknown;
      try {
        record = JSON.parse(bytes.toString('utf8'));
      } catch {
        return broken('record is not valid JSON');
      }
      const problem = shapeProblem(record);
      if (problem !== undefined) {
        const seq = (record as { seq?: unknown } | null)?.seq;
        return broken(problem, typeof seq === 'number' ? seq : undefined);
      }
      const { seq: s, prev, checkpoint } = record as ParsedRecord;

      if (previous === undefined) {
        if (s !== 1) return broken(`the chain starts at seq ${s}, not 1: earlier records are missing`, s);
        if (prev !== GENESIS) return broken('the first record of the chain does not have the genesis prev (64 zeros): earlier records are missing', s);
      } else {
        if (s !== previous.seq + 1) return broken(`seq ${s} follows ${previous.seq}`, s);
        if (prev !== previous.hash) {
          const where = previous.file === file ? `line ${previous.line}` : `${previous.file} line ${previous.line}`;
          return broken(`prev hash does not match record ${previous.seq} (${where}): record ${previous.seq} was altered or a record after it removed, or this record's prev was altered`, s);
        }
      }
      if (checkpoint !== undefined && checkpointKey !== undefined && checkpoint.hmac !== checkpointHmac(checkpointKey, prev)) {
        return broken('checkpoint HMAC does not match: a different key, or the records before it were rewritten', s);
      }
      previous = { seq: s, hash: lineHash(bytes), file, line: lineNo };
      records++;
    }
  }
  return { ok: true, records };
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

/**
 * The lines of `file` in chunks, so a large log is never held whole. A yielded buffer may
 * share memory with the next read: use it before asking for the next line.
 */
function* readLines(file: string): Generator<Line> {
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
