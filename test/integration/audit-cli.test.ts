/**
 * `pgtenant audit verify` as a child process (`node --import tsx src/cli.ts`, no build step):
 * the verdict line and the exit status for intact, tampered and rotated chains, keys, and
 * usage errors.
 */
import { spawn } from 'node:child_process';
import { mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { AuditLog, type AuditLogOptions } from '../../src/audit/log.js';

const ROOT = fileURLToPath(new URL('../../', import.meta.url));
const CLI = ['--import', 'tsx', 'src/cli.ts'];

interface RunResult {
  code: number | null;
  stdout: string;
  stderr: string;
}

function runCli(args: string[], env: NodeJS.ProcessEnv = {}): Promise<RunResult> {
  return new Promise((resolve, reject) => {
    const childEnv = { ...process.env, ...env };
    if (env.PGTENANT_AUDIT_KEY === undefined) delete childEnv.PGTENANT_AUDIT_KEY;
    const child = spawn(process.execPath, [...CLI, ...args], { cwd: ROOT, env: childEnv, stdio: ['ignore', 'pipe', 'pipe'] });
    let stdout = '';
    let stderr = '';
    child.stdout.setEncoding('utf8').on('data', (c: string) => (stdout += c));
    child.stderr.setEncoding('utf8').on('data', (c: string) => (stderr += c));
    const timer = setTimeout(() => child.kill('SIGKILL'), 30_000);
    child.once('error', (err) => {
      clearTimeout(timer);
      reject(err);
    });
    child.once('close', (code) => {
      clearTimeout(timer);
      resolve({ code, stdout, stderr });
    });
  });
}

async function writeEvents(opts: AuditLogOptions, count: number): Promise<void> {
  const log = await AuditLog.open(opts);
  for (let i = 1; i <= count; i++) log.append({ kind: 'connect', user: `user-${i}` });
  await log.close();
}

let dir: string;

beforeAll(async () => {
  dir = await mkdtemp(path.join(os.tmpdir(), 'pgtenant-audit-cli-'));
});

afterAll(async () => {
  await rm(dir, { recursive: true, force: true });
});

describe('pgtenant audit verify', () => {
  it('prints ok with the record count and exits 0 for an intact chain', async () => {
    const file = path.join(dir, 'intact.log');
    await writeEvents({ file }, 200);
    expect(await runCli(['audit', 'verify', file])).toEqual({ code: 0, stdout: 'ok: 200 records\n', stderr: '' });
  });

  it('prints where the chain breaks and exits 1', async () => {
    const file = path.join(dir, 'tampered.log');
    await writeEvents({ file }, 200);
    const lines = (await readFile(file, 'utf8')).split('\n');
    lines[99] = lines[99].replace('"user-100"', '"user-1OO"');
    await writeFile(file, lines.join('\n'));
    const result = await runCli(['audit', 'verify', file]);
    expect(result.code).toBe(1);
    expect(result.stdout).toBe(`broken at ${file}:101 (seq 101): prev hash does not match record 100 (line 100): record 100 was altered, or records after it removed\n`);
  });

  it('picks up the rotated siblings of a single file, oldest first', async () => {
    const file = path.join(dir, 'rotated.log');
    await writeEvents({ file, maxBytes: 3000 }, 60);
    expect(await runCli(['audit', 'verify', file])).toMatchObject({ code: 0, stdout: 'ok: 60 records\n' });
    // Given explicitly, only the files named are checked, in the order given.
    const result = await runCli(['audit', 'verify', `${file}.2`, file]);
    expect(result.code).toBe(1);
    expect(result.stdout).toMatch(new RegExp(`^broken at ${file}\\.2:1 \\(seq \\d+\\): the chain starts at seq \\d+, not 1: earlier records are missing\\n$`));
  });

  it('checks checkpoints with --key or $PGTENANT_AUDIT_KEY', async () => {
    const file = path.join(dir, 'keyed.log');
    await writeEvents({ file, checkpointKey: 'right', checkpointEvery: 50 }, 120);
    expect(await runCli(['audit', 'verify', file, '--key', 'right'])).toMatchObject({ code: 0, stdout: 'ok: 123 records\n' });
    expect(await runCli(['audit', 'verify', file], { PGTENANT_AUDIT_KEY: 'right' })).toMatchObject({ code: 0, stdout: 'ok: 123 records\n' });
    expect(await runCli(['audit', 'verify', file, '--key', 'wrong'])).toMatchObject({
      code: 1,
      stdout: `broken at ${file}:51 (seq 51): checkpoint HMAC does not match: a different key, or the records before it were rewritten\n`,
    });
    // Written every 50: told to expect one every 20, the verifier finds them missing.
    expect(await runCli(['audit', 'verify', file, '--key', 'right', '--every', '20'])).toMatchObject({ code: 1, stdout: expect.stringMatching(/without another \(at most 20, audit\.checkpointEvery\)/) });
    expect(await runCli(['audit', 'verify', file, '--key', 'right', '--every', '0'])).toMatchObject({ code: 2, stderr: expect.stringMatching(/^usage: /) });
  });

  it('exits 2 for a missing file or without files', async () => {
    const missing = await runCli(['audit', 'verify', path.join(dir, 'missing.log')]);
    expect(missing.code).toBe(2);
    expect(missing.stderr).toMatch(/^pgtenant audit: ENOENT/);
    const usage = await runCli(['audit', 'verify']);
    expect(usage.code).toBe(2);
    expect(usage.stderr).toMatch(/^usage: pgtenant audit verify FILE\.\.\. \[--key KEY\] \[--every N\]/);
  });
});
