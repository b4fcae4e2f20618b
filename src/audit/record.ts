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
 * Anyone with write access can rewrite the log and recompute the plain hashes; without the
 * key they cannot produce a checkpoint that verifies, so everything up to the last valid
 * checkpoint is authentic. Records after it are only as good as the file's permissions.
 */
export function checkpointHmac(key: string, prev: string): string {
  return createHmac('sha256', key).update(prev).digest('hex');
}
