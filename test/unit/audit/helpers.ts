import { mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { afterEach } from 'vitest';
import { AuditLog, type AuditLogOptions } from '../../../src/audit/log.js';

const dirs: string[] = [];

/** A fresh directory, removed after the test. */
export async function tempDir(): Promise<string> {
  const dir = await mkdtemp(path.join(os.tmpdir(), 'pgtenant-audit-'));
  dirs.push(dir);
  return dir;
}

afterEach(async () => {
  await Promise.all(dirs.splice(0).map((dir) => rm(dir, { recursive: true, force: true })));
});

/** Opens a log, appends `count` connect events numbered from `from`, closes it. */
export async function writeEvents(opts: AuditLogOptions, count: number, from = 1): Promise<void> {
  const log = await AuditLog.open(opts);
  for (let i = from; i < from + count; i++) log.append({ kind: 'connect', user: `user-${i}`, n: i });
  await log.close();
}

/** The file's lines, without the trailing empty string after the last newline. */
export async function readLines(file: string): Promise<string[]> {
  const text = await readFile(file, 'utf8');
  return text.endsWith('\n') ? text.slice(0, -1).split('\n') : text.split('\n');
}

export async function writeLines(file: string, lines: string[]): Promise<void> {
  await writeFile(file, lines.map((l) => l + '\n').join(''));
}

/** Replaces line `lineNo` (1-based) with what `edit` makes of it. */
export async function editLine(file: string, lineNo: number, edit: (line: string) => string): Promise<void> {
  const lines = await readLines(file);
  lines[lineNo - 1] = edit(lines[lineNo - 1]);
  await writeLines(file, lines);
}
