import { spawn } from 'node:child_process';
import { accessSync, constants } from 'node:fs';
import path from 'node:path';

export type PgBinary = 'psql' | 'pgbench';

export interface RunOptions {
  /** Added to (and overriding) the inherited environment, e.g. PGPASSWORD. */
  env?: Record<string, string>;
  /** Written to stdin, which is then closed. */
  input?: string;
  /** The process is killed (SIGKILL) after this long; default 30 s. */
  timeoutMs?: number;
}

export interface RunResult {
  /** Exit code, or null when the process was killed (e.g. by the timeout). */
  code: number | null;
  stdout: string;
  stderr: string;
}

// Debian/Ubuntu install the client tools here without putting them on PATH.
const FALLBACK_DIR = '/usr/lib/postgresql/15/bin';
const DEFAULT_TIMEOUT_MS = 30_000;

export function pgBin(name: PgBinary): string {
  const dirs = [...(process.env.PATH ?? '').split(path.delimiter).filter(Boolean), FALLBACK_DIR];
  for (const dir of dirs) {
    const candidate = path.resolve(dir, name);
    try {
      accessSync(candidate, constants.X_OK);
      return candidate;
    } catch {
      // not here; keep looking
    }
  }
  throw new Error(`${name} not found on PATH or in ${FALLBACK_DIR}; install the PostgreSQL client tools`);
}

export function runPsql(args: string[], opts: RunOptions = {}): Promise<RunResult> {
  return run(pgBin('psql'), args, opts);
}

export function runPgbench(args: string[], opts: RunOptions = {}): Promise<RunResult> {
  return run(pgBin('pgbench'), args, opts);
}

function run(file: string, args: string[], opts: RunOptions): Promise<RunResult> {
  const timeoutMs = opts.timeoutMs ?? DEFAULT_TIMEOUT_MS;
  return new Promise((resolve, reject) => {
    // No shell: arguments reach the binary verbatim.
    const child = spawn(file, args, { env: { ...process.env, ...opts.env }, stdio: 'pipe' });
    let stdout = '';
    let stderr = '';
    let timedOut = false;
    child.stdout.setEncoding('utf8').on('data', (chunk: string) => (stdout += chunk));
    child.stderr.setEncoding('utf8').on('data', (chunk: string) => (stderr += chunk));
    // The child may exit before reading all of its input; that is not our error.
    child.stdin.on('error', () => undefined);
    child.stdin.end(opts.input);

    const timer = setTimeout(() => {
      timedOut = true;
      child.kill('SIGKILL');
    }, timeoutMs);
    child.once('error', (err) => {
      clearTimeout(timer);
      reject(err);
    });
    child.once('close', (code) => {
      clearTimeout(timer);
      if (timedOut) stderr += `\n[${path.basename(file)} killed after ${timeoutMs} ms timeout]`;
      resolve({ code, stdout, stderr });
    });
  });
}
