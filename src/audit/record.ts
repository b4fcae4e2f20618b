import { createHash, createHmac } from 'node:crypto';

/**
 * The record format shared by the writer (log.ts) and the checker (verify.ts).
 *
 * One record per line: `{"seq":N,"time":"ISO","prev":"<hex>","event":{...}}` or, for a
 * checkpoint, `..."checkpoint":{"hmac":"<hex>"}`. `prev` is the SHA-256 of the previous
 * record's exact line bytes (without the newline), so changing, inserting or removing any
 * record breaks the link of the record after it.
 */

/** `prev` of the first record of a brand-new chain. */
export const GENESIS = '0'.repeat(64);

export type AuditKind = 'connect' | 'disconnect' | 'auth_failed' | 'blocked' | 'admin' | 'reload' | 'placement';

export interface AuditEvent {
  kind: AuditKind;
  [k: string]: unknown;
}

/** Hash of one record line: the bytes as they are on disk, so a verifier never re-encodes. */
export function lineHash(line: string | Buffer): string {
  return createHash('sha256').update(line).digest('hex');
}

/**
 * A checkpoint's HMAC covers its own `prev`, and through the chain every record before it.
 * Anyone who can write the file can change a record and recompute every later hash, and the
 * plain chain still verifies; without the key they cannot make the checkpoints after the
 * change verify. So with the key, records before the last checkpoint are authentic; the few
 * after it (up to checkpointEvery) rest on the chain and the file's permissions alone.
 * Verification checks the checkpoints present: a chain rewritten from its very start with
 * every checkpoint dropped has none, which is itself the sign to look for.
 */
export function checkpointHmac(key: string, prev: string): string {
  return createHmac('sha256', key).update(prev).digest('hex');
}
