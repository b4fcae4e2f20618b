import { appendFile, mkdir, readdir, rename, stat } from 'node:fs/promises';
import path from 'node:path';
import { describe, expect, it, vi } from 'vitest';
import { chainFiles, rotationNumbers } from '../../../src/audit/files.js';
import { AuditLog } from '../../../src/audit/log.js';
import { GENESIS, checkpointHmac, lineHash } from '../../../src/audit/record.js';
import { verifyAuditFiles } from '../../../src/audit/verify.js';
import { readLines, tempDir, writeEvents, writeLines } from './helpers.js';

interface Rec {
  seq: number;
  time: string;
  prev: string;
  event?: { kind: string; n?: number; [k: string]: unknown };
  checkpoint?: { hmac: string };
}

const parse = (lines: string[]): Rec[] => lines.map((l) => JSON.parse(l) as Rec);

describe('AuditLog', () => {
  it('writes one hash-chained JSON record per line, starting from the genesis prev', async () => {
    const file = path.join(await tempDir(), 'audit.log');
    const log = await AuditLog.open({ file });
    log.append({ kind: 'connect', user: 'web', tenant: 'acme' });
    log.append({ kind: 'blocked', sql: 'select "x"\nfrom y' });
    log.append({ kind: 'disconnect', user: 'web' });
    await log.close();

    const lines = await readLines(file);
    const records = parse(lines);
    expect(records.map((r) => r.seq)).toEqual([1, 2, 3]);
    expect(records[0].prev).toBe(GENESIS);
    expect(records[1].prev).toBe(lineHash(lines[0]));
    expect(records[2].prev).toBe(lineHash(lines[1]));
    expect(records[1].event).toEqual({ kind: 'blocked', sql: 'select "x"\nfrom y' });
    expect(Object.keys(records[0])).toEqual(['seq', 'time', 'prev', 'event']);
    expect(new Date(records[0].time).toISOString()).toBe(records[0].time);
    expect(verifyAuditFiles([file])).toEqual({ ok: true, records: 3 });
  });

  it('continues the chain when an existing file is reopened', async () => {
    const file = path.join(await tempDir(), 'audit.log');
    await writeEvents({ file }, 500);
    await writeEvents({ file }, 300, 501);
    await writeEvents({ file }, 1, 801);

    const records = parse(await readLines(file));
    expect(records.map((r) => r.seq)).toEqual(Array.from({ length: 801 }, (_, i) => i + 1));
    expect(records.map((r) => r.event?.n)).toEqual(Array.from({ length: 801 }, (_, i) => i + 1));
    expect(verifyAuditFiles([file])).toEqual({ ok: true, records: 801 });
  });

  it('finds the last record behind a line longer than the backwards read chunk', async () => {
    const file = path.join(await tempDir(), 'audit.log');
    const log = await AuditLog.open({ file });
    log.append({ kind: 'admin', note: 'small' });
    log.append({ kind: 'admin', note: 'x'.repeat(200_000) });
    await log.close();
    await writeEvents({ file }, 2);
    expect(verifyAuditFiles([file])).toEqual({ ok: true, records: 4 });
  });

  it('keeps call order for 10k appends in a tight loop', async () => {
    const file = path.join(await tempDir(), 'audit.log');
    const log = await AuditLog.open({ file });
    for (let i = 1; i <= 10_000; i++) log.append({ kind: 'connect', n: i });
    await log.close();

    const records = parse(await readLines(file));
    expect(records.map((r) => r.event?.n)).toEqual(Array.from({ length: 10_000 }, (_, i) => i + 1));
    expect(verifyAuditFiles([file])).toEqual({ ok: true, records: 10_000 });
  });

  it('keeps call order when appends interleave with writes in flight', async () => {
    const file = path.join(await tempDir(), 'audit.log');
    const log = await AuditLog.open({ file, maxBytes: 64 * 1024 });
    const calls: string[] = [];
    const producer = async (id: number): Promise<void> => {
      for (let i = 0; i < 1000; i++) {
        log.append({ kind: 'placement', id: `${id}:${i}` });
        calls.push(`${id}:${i}`);
        if (i % 7 === id % 7) await new Promise((r) => setImmediate(r));
      }
    };
    await Promise.all(Array.from({ length: 10 }, (_, id) => producer(id)));
    await log.close();

    const files = chainFiles(file, await readdir(path.dirname(file)));
    expect(files.length).toBeGreaterThan(2);
    const written = (await Promise.all(files.map(readLines))).flat();
    expect(parse(written).map((r) => r.event?.id)).toEqual(calls);
    expect(verifyAuditFiles(files)).toEqual({ ok: true, records: 10_000 });
  });

  it('writes a checkpoint every checkpointEvery events and on close', async () => {
    const file = path.join(await tempDir(), 'audit.log');
    await writeEvents({ file, checkpointKey: 'k1', checkpointEvery: 10 }, 35);

    const lines = await readLines(file);
    const records = parse(lines);
    expect(records).toHaveLength(39);
    const checkpoints = records.filter((r) => r.checkpoint !== undefined).map((r) => r.seq);
    expect(checkpoints).toEqual([11, 22, 33, 39]);
    const cp = records[10];
    expect(Object.keys(cp)).toEqual(['seq', 'time', 'prev', 'checkpoint']);
    expect(cp.prev).toBe(lineHash(lines[9]));
    expect(cp.checkpoint).toEqual({ hmac: checkpointHmac('k1', cp.prev) });
    expect(verifyAuditFiles([file], 'k1')).toEqual({ ok: true, records: 39 });
  });

  it('after an unclean close, opens with a checkpoint so no stretch without one outgrows checkpointEvery', async () => {
    const file = path.join(await tempDir(), 'audit.log');
    await writeEvents({ file, checkpointKey: 'k1', checkpointEvery: 10 }, 15);
    // A crash: the checkpoint close() wrote is lost.
    await writeLines(file, (await readLines(file)).slice(0, -1));
    await writeEvents({ file, checkpointKey: 'k1', checkpointEvery: 10 }, 9, 16);
    const checkpoints = parse(await readLines(file)).filter((r) => r.checkpoint !== undefined).map((r) => r.seq);
    expect(checkpoints).toEqual([11, 17, 27]);
    expect(verifyAuditFiles([file], 'k1', 10)).toEqual({ ok: true, records: 27 });
  });

  it('adds no second checkpoint on close when the last record is one, nor any to an empty chain', async () => {
    const dir = await tempDir();
    const file = path.join(dir, 'audit.log');
    await writeEvents({ file, checkpointKey: 'k1', checkpointEvery: 5 }, 5);
    expect(parse(await readLines(file)).map((r) => r.checkpoint !== undefined)).toEqual([false, false, false, false, false, true]);
    await (await AuditLog.open({ file, checkpointKey: 'k1' })).close();
    expect(await readLines(file)).toHaveLength(6);

    const empty = path.join(dir, 'empty.log');
    await (await AuditLog.open({ file: empty, checkpointKey: 'k1' })).close();
    expect((await stat(empty)).size).toBe(0);
  });

  it('rotates before a record would take the file beyond maxBytes, the chain running across files', async () => {
    const dir = await tempDir();
    const file = path.join(dir, 'audit.log');
    await writeEvents({ file, maxBytes: 5000 }, 80);

    expect((await readdir(dir)).sort()).toEqual(['audit.log', 'audit.log.1', 'audit.log.2']);
    const files = [`${file}.1`, `${file}.2`, file];
    for (const f of files) expect((await stat(f)).size).toBeLessThanOrEqual(5000);
    const first = await readLines(files[0]);
    const second = await readLines(files[1]);
    expect(JSON.parse(second[0]).prev).toBe(lineHash(first[first.length - 1]));
    expect(JSON.parse(second[0]).seq).toBe(first.length + 1);
    expect(verifyAuditFiles(files)).toEqual({ ok: true, records: 80 });

    // Reopening goes on numbering after the newest rotated file.
    await writeEvents({ file, maxBytes: 5000 }, 40, 81);
    const rotations = rotationNumbers(file, await readdir(dir));
    expect(rotations.length).toBeGreaterThan(2);
    expect(rotations).toEqual(rotations.map((_, i) => i + 1));
    expect(verifyAuditFiles(chainFiles(file, await readdir(dir)))).toEqual({ ok: true, records: 120 });
  });

  it('continues from the newest rotated file when the current file is missing', async () => {
    const dir = await tempDir();
    const file = path.join(dir, 'audit.log');
    await writeEvents({ file }, 10);
    await rename(file, `${file}.1`); // as if the process died right after rotating
    await writeEvents({ file }, 5, 11);
    expect(JSON.parse((await readLines(file))[0]).seq).toBe(11);
    expect(verifyAuditFiles([`${file}.1`, file])).toEqual({ ok: true, records: 15 });
  });

  it('refuses to continue a file that ends with an incomplete record', async () => {
    const file = path.join(await tempDir(), 'audit.log');
    await writeEvents({ file }, 3);
    await appendFile(file, '{"seq":4,"time":"2026-');
    await expect(AuditLog.open({ file })).rejects.toThrow(/ends with an incomplete record/);
  });

  it('refuses to continue a file whose last line is not a record', async () => {
    const file = path.join(await tempDir(), 'audit.log');
    await writeEvents({ file }, 3);
    await appendFile(file, 'hello\n');
    await expect(AuditLog.open({ file })).rejects.toThrow(/last line is not an audit record/);
  });

  it('rejects an event JSON cannot represent without disturbing the chain', async () => {
    const file = path.join(await tempDir(), 'audit.log');
    const log = await AuditLog.open({ file });
    log.append({ kind: 'admin', n: 1 });
    expect(() => log.append({ kind: 'admin', n: 10n })).toThrow(TypeError);
    log.append({ kind: 'admin', n: 2 });
    await log.close();
    expect(parse(await readLines(file)).map((r) => [r.seq, r.event?.n])).toEqual([[1, 1], [2, 2]]);
    expect(verifyAuditFiles([file])).toEqual({ ok: true, records: 2 });
  });

  it('throws on append after close; close can be called twice', async () => {
    const file = path.join(await tempDir(), 'audit.log');
    const log = await AuditLog.open({ file });
    log.append({ kind: 'reload' });
    const closed = log.close();
    expect(() => log.append({ kind: 'reload' })).toThrow(/is closed/);
    await closed;
    await log.close();
    expect(await readLines(file)).toHaveLength(1);
  });

  it('fails closed after a write error: append throws it and close rejects with it', async () => {
    const dir = await tempDir();
    const file = path.join(dir, 'audit.log');
    const log = await AuditLog.open({ file, maxBytes: 300 });
    log.append({ kind: 'connect', n: 1 });
    await mkdir(`${file}.1/occupied`, { recursive: true }); // the rotation's rename now fails
    log.append({ kind: 'connect', n: 2, pad: 'x'.repeat(200) });
    await vi.waitFor(() => expect(() => log.append({ kind: 'connect', n: 3 })).toThrow(/EISDIR|ENOTEMPTY|EEXIST/));
    await expect(log.close()).rejects.toThrow(/EISDIR|ENOTEMPTY|EEXIST/);
    expect(parse(await readLines(file)).map((r) => r.event?.n)).toEqual([1]);
  });

  it('validates its options', async () => {
    const file = path.join(await tempDir(), 'audit.log');
    await expect(AuditLog.open({ file, checkpointEvery: 0 })).rejects.toThrow(RangeError);
    await expect(AuditLog.open({ file, checkpointEvery: 1.5 })).rejects.toThrow(RangeError);
    await expect(AuditLog.open({ file, maxBytes: 0 })).rejects.toThrow(RangeError);
    await expect(AuditLog.open({ file, checkpointKey: '' })).rejects.toThrow(RangeError);
  });
});
