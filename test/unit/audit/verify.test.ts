import { appendFile, readFile, readdir, writeFile } from 'node:fs/promises';
import path from 'node:path';
import { describe, expect, it } from 'vitest';
import { chainFiles } from '../../../src/audit/files.js';
import { GENESIS, lineHash } from '../../../src/audit/record.js';
import { verifyAuditFiles } from '../../../src/audit/verify.js';
import { editLine, readLines, tempDir, writeEvents, writeLines } from './helpers.js';

/** The reason for a record whose prev does not match record `seq` at `where` while its own successor links to it. */
const previousAltered = (seq: number, where: string): string =>
  `prev hash does not match record ${seq} (${where}): record ${seq} was altered, or records after it removed`;

/** The reason for a record that neither links to record `seq` at `where` nor is linked to by its successor. */
const thisAltered = (seq: number, where: string): string =>
  `this record was altered: its prev does not match record ${seq} (${where}), and the next record does not link to it`;

/** Flips one hex digit of a record's prev, leaving valid JSON. */
const flipPrev = (line: string): string => line.replace(/"prev":"(.)/, (_, c: string) => `"prev":"${c === 'a' ? 'b' : 'a'}`);

/** Renumbers records from seq 1 and recomputes every prev, as someone rewriting the chain without the key would. */
function relink(lines: string[]): string[] {
  const out: string[] = [];
  for (const [i, l] of lines.entries()) {
    out.push(l.replace(/"seq":\d+/, `"seq":${i + 1}`).replace(/"prev":"[0-9a-f]{64}"/, `"prev":"${i === 0 ? GENESIS : lineHash(out[i - 1])}"`));
  }
  return out;
}

async function chainOf(count: number, opts: { checkpointKey?: string; checkpointEvery?: number; maxBytes?: number } = {}): Promise<string> {
  const file = path.join(await tempDir(), 'audit.log');
  await writeEvents({ file, ...opts }, count);
  return file;
}

describe('verifyAuditFiles', () => {
  it('accepts an intact chain, an empty file and no files', async () => {
    const file = await chainOf(100);
    expect(verifyAuditFiles([file])).toEqual({ ok: true, records: 100 });
    await writeFile(file, '');
    expect(verifyAuditFiles([file])).toEqual({ ok: true, records: 0 });
    expect(verifyAuditFiles([])).toEqual({ ok: true, records: 0 });
  });

  it('reports a changed value at the next record, naming the changed one', async () => {
    const file = await chainOf(100);
    await editLine(file, 50, (l) => l.replace('"user-50"', '"user-5X"'));
    expect(verifyAuditFiles([file])).toEqual({ ok: false, file, line: 51, seq: 51, reason: previousAltered(50, 'line 50') });
  });

  it('reports a changed prev at that record, which its successor no longer links to', async () => {
    const file = await chainOf(100);
    await editLine(file, 50, flipPrev);
    expect(verifyAuditFiles([file])).toEqual({ ok: false, file, line: 50, seq: 50, reason: thisAltered(49, 'line 49') });
  });

  it('cannot tell which side of the last link changed', async () => {
    const file = await chainOf(10);
    await editLine(file, 10, flipPrev);
    expect(verifyAuditFiles([file])).toEqual({
      ok: false,
      file,
      line: 10,
      seq: 10,
      reason: 'prev hash does not match record 9 (line 9): record 9 or this record was altered, or records between them removed',
    });
  });

  it('reports a record made invalid JSON at that record', async () => {
    const file = await chainOf(100);
    await editLine(file, 50, (l) => l.replace('"user":', '"user";'));
    expect(verifyAuditFiles([file])).toEqual({ ok: false, file, line: 50, reason: 'record is not valid JSON' });
  });

  it('reports a changed seq at that record', async () => {
    const file = await chainOf(100);
    await editLine(file, 50, (l) => l.replace('"seq":50,', '"seq":59,'));
    expect(verifyAuditFiles([file])).toEqual({ ok: false, file, line: 50, seq: 59, reason: 'seq 59 follows 49' });
  });

  it('points at record k (itself, or its successor naming it) whichever byte of it is flipped', async () => {
    const file = await chainOf(60);
    const original = await readFile(file);
    const lines = await readLines(file);
    const k = 30;
    const start = lines.slice(0, k - 1).reduce((n, l) => n + Buffer.byteLength(l) + 1, 0);
    const length = Buffer.byteLength(lines[k - 1]);
    const atSuccessor = previousAltered(k, `line ${k}`);
    for (let i = start; i < start + length; i++) {
      const tampered = Buffer.from(original);
      tampered[i] ^= 0x01;
      await writeFile(file, tampered);
      const result = verifyAuditFiles([file]);
      const where = `byte ${i - start} of record ${k}: ${String.fromCharCode(original[i])}`;
      expect(result.ok, where).toBe(false);
      if (result.ok) continue;
      expect(result.file, where).toBe(file);
      if (result.line === k + 1) expect(result.reason, where).toBe(atSuccessor);
      else expect(result.line, where).toBe(k);
    }
  });

  it('reports a deleted line at the record after the gap', async () => {
    const file = await chainOf(100);
    const lines = await readLines(file);
    lines.splice(49, 1);
    await writeLines(file, lines);
    expect(verifyAuditFiles([file])).toEqual({ ok: false, file, line: 50, seq: 51, reason: 'seq 51 follows 49' });
  });

  it('reports a deleted line whose successors were renumbered at the broken link', async () => {
    const file = await chainOf(20);
    const lines = (await readLines(file)).filter((_, i) => i !== 9).map((l, i) => l.replace(/^\{"seq":\d+,/, `{"seq":${i + 1},`));
    await writeLines(file, lines);
    expect(verifyAuditFiles([file])).toEqual({ ok: false, file, line: 10, seq: 10, reason: thisAltered(9, 'line 9') });
  });

  it('reports missing records at the start of the chain', async () => {
    const file = await chainOf(10);
    await writeLines(file, (await readLines(file)).slice(3));
    expect(verifyAuditFiles([file])).toEqual({ ok: false, file, line: 1, seq: 4, reason: 'the chain starts at seq 4, not 1: earlier records are missing' });

    await writeEvents({ file: path.join(path.dirname(file), 'other.log') }, 1);
    const other = await readLines(path.join(path.dirname(file), 'other.log'));
    await writeLines(file, [other[0].replace(/"prev":"0/, '"prev":"1')]);
    expect(verifyAuditFiles([file])).toEqual({
      ok: false,
      file,
      line: 1,
      seq: 1,
      reason: 'the first record of the chain does not have the genesis prev (64 zeros): earlier records are missing',
    });
  });

  it('reports a last line without its newline', async () => {
    const file = await chainOf(5);
    await appendFile(file, '{"seq":6');
    expect(verifyAuditFiles([file])).toEqual({
      ok: false,
      file,
      line: 6,
      reason: 'record does not end with a newline (an incomplete write, or bytes added after the last record)',
    });
  });

  it('reports records of the wrong shape', async () => {
    const file = await chainOf(3);
    const lines = await readLines(file);
    const cases: [string, string][] = [
      ['', 'empty line where a record should be'],
      ['[1,2]', 'record is not a JSON object'],
      [lines[1].replace('"seq":2', '"seq":"2"'), 'record has no valid seq'],
      [lines[1].replace(/"time":"[^"]*"/, '"time":"yesterday"'), 'record has no valid time'],
      [lines[1].replace(/"prev":"[0-9a-f]{4}/, '"prev":"XYZW'), 'record has no valid prev hash'],
      [lines[1].replace('"event":', '"evnt":'), 'record must have exactly one of event and checkpoint'],
      [lines[1].replace('"kind":"connect",', ''), 'record has an event without a kind'],
    ];
    for (const [line, reason] of cases) {
      await writeLines(file, [lines[0], line, lines[2]]);
      expect(verifyAuditFiles([file]), reason).toMatchObject({ ok: false, file, line: 2, reason });
    }
  });

  it('verifies a chain rotated over 3 files and finds tampering in the second with its file name', async () => {
    const file = await chainOf(80, { maxBytes: 5000 });
    const files = chainFiles(file, await readdir(path.dirname(file)));
    expect(files).toEqual([`${file}.1`, `${file}.2`, file]);
    expect(verifyAuditFiles(files)).toEqual({ ok: true, records: 80 });

    const first = (await readLines(files[0])).length;
    const second = await readLines(files[1]);
    await editLine(files[1], 10, (l) => l.replace(/"n":\d+/, '"n":0'));
    expect(verifyAuditFiles(files)).toEqual({ ok: false, file: files[1], line: 11, seq: first + 11, reason: previousAltered(first + 10, 'line 10') });

    // The last record of file 2: the break shows in file 3, naming file 2.
    await writeLines(files[1], second);
    const last = second.length;
    await editLine(files[1], last, (l) => l.replace(/"n":\d+/, '"n":0'));
    expect(verifyAuditFiles(files)).toEqual({ ok: false, file, line: 1, seq: first + last + 1, reason: previousAltered(first + last, `${files[1]} line ${last}`) });
  });

  it('finds a missing or misordered file', async () => {
    const file = await chainOf(80, { maxBytes: 5000 });
    const [one, two, three] = chainFiles(file, await readdir(path.dirname(file)));
    const first = (await readLines(one)).length;
    const second = (await readLines(two)).length;
    expect(verifyAuditFiles([one, three])).toMatchObject({ ok: false, file: three, line: 1, reason: `seq ${first + second + 1} follows ${first}` });
    expect(verifyAuditFiles([two, one, three])).toMatchObject({ ok: false, file: two, line: 1, reason: `the chain starts at seq ${first + 1}, not 1: earlier records are missing` });
  });

  it('checks checkpoint HMACs with a key, and fails with the wrong key', async () => {
    const file = await chainOf(35, { checkpointKey: 'k1', checkpointEvery: 10 });
    expect(verifyAuditFiles([file], 'k1')).toEqual({ ok: true, records: 39 });
    expect(verifyAuditFiles([file])).toEqual({ ok: true, records: 39 });
    expect(verifyAuditFiles([file], 'k2')).toEqual({
      ok: false,
      file,
      line: 11,
      seq: 11,
      reason: 'checkpoint HMAC does not match: a different key, or the records before it were rewritten',
    });
  });

  it('catches a rewritten tail with recomputed hashes only through the key', async () => {
    const file = await chainOf(35, { checkpointKey: 'k1', checkpointEvery: 10 });
    // Rewrite record 25 (seq 27) and recompute every later prev, as someone without the key would.
    const lines = await readLines(file);
    lines[26] = lines[26].replace('"user-25"', '"user-99"');
    for (let i = 27; i < lines.length; i++) lines[i] = lines[i].replace(/"prev":"[0-9a-f]{64}"/, `"prev":"${lineHash(lines[i - 1])}"`);
    await writeLines(file, lines);
    expect(verifyAuditFiles([file])).toEqual({ ok: true, records: 39 });
    expect(verifyAuditFiles([file], 'k1')).toEqual({
      ok: false,
      file,
      line: 33,
      seq: 33,
      reason: 'checkpoint HMAC does not match: a different key, or the records before it were rewritten',
    });
  });

  it('with a key, finds checkpoints stripped from a chain rewritten with recomputed hashes', async () => {
    const file = await chainOf(35, { checkpointKey: 'k1', checkpointEvery: 10 });
    // Drop every checkpoint after the first, renumber and relink, as someone without the key would.
    await writeLines(file, relink((await readLines(file)).filter((l, i) => i === 10 || !l.includes('"checkpoint"'))));
    expect(verifyAuditFiles([file])).toEqual({ ok: true, records: 36 });
    expect(verifyAuditFiles([file], 'k1', 10)).toEqual({
      ok: false,
      file,
      line: 22,
      seq: 22,
      reason: '11 records follow the checkpoint at seq 11 without another (at most 10, audit.checkpointEvery): checkpoints were removed, or the chain after them rewritten',
    });
  });

  it('with a key, finds a chain with no checkpoint at all once it is longer than checkpointEvery', async () => {
    const file = await chainOf(12, { checkpointKey: 'k1', checkpointEvery: 10 });
    await writeLines(file, relink((await readLines(file)).filter((l) => !l.includes('"checkpoint"'))));
    expect(verifyAuditFiles([file], 'k1', 20)).toEqual({ ok: true, records: 12 });
    expect(verifyAuditFiles([file], 'k1', 10)).toMatchObject({ ok: false, line: 12, seq: 12, reason: 'no checkpoint in 12 records (one is written every 10, audit.checkpointEvery): checkpoints were removed, or the chain was written without the key' });
  });
});
