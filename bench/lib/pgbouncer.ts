/**
 * PgBouncer for the comparison: installed with apt-get when missing, run in the foreground in
 * transaction mode with a temp config dir, as a non-root user (it refuses to run as root).
 */
import { execFileSync } from 'node:child_process';
import { chownSync, existsSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { freePort, onCleanup, run, spawnTracked, stopChild, untilListening } from './procs.js';

export interface PgbouncerBinary {
  bin: string;
  version: string;
}

function findBinary(): string | undefined {
  for (const dir of (process.env.PATH ?? '').split(':').concat(['/usr/sbin', '/usr/bin', '/usr/local/bin', '/usr/local/sbin'])) {
    const candidate = path.join(dir, 'pgbouncer');
    if (dir !== '' && existsSync(candidate)) return candidate;
  }
  return undefined;
}

/** The pgbouncer binary, installing it with apt-get when missing; a reason string when unavailable. */
export async function ensurePgbouncer(): Promise<PgbouncerBinary | { unavailable: string }> {
  let bin = findBinary();
  if (bin === undefined) {
    console.log('pgbouncer not found: installing it with `apt-get install -y pgbouncer` (needs root and network)…');
    const env = { ...process.env, DEBIAN_FRONTEND: 'noninteractive' };
    const install = (): Promise<{ code: number | null; out: string }> => run('apt-get', ['install', '-y', '--no-install-recommends', 'pgbouncer'], { env });
    let res = await install().catch((err: Error) => ({ code: -1, out: err.message }));
    if (res.code !== 0) {
      console.log('apt-get install failed; running apt-get update and trying once more…');
      await run('apt-get', ['update'], { env }).catch(() => undefined);
      res = await install().catch((err: Error) => ({ code: -1, out: err.message }));
    }
    bin = findBinary();
    if (res.code !== 0 || bin === undefined) {
      const last = res.out.trim().split('\n').slice(-3).join(' | ');
      return { unavailable: `installing pgbouncer failed (apt-get exit ${res.code}: ${last})` };
    }
    console.log(`pgbouncer installed: ${bin}`);
  }
  const out = await run(bin, ['--version']);
  return { bin, version: out.out.split('\n')[0]?.trim() ?? 'unknown' };
}

/** uid/gid to run pgbouncer as: the current user, or when root the `postgres` user (else nobody). */
function runAs(): { uid: number; gid: number; name: string } | undefined {
  if (process.getuid?.() !== 0) return undefined;
  for (const name of ['postgres', 'nobody']) {
    try {
      const id = (flag: string): number => Number(execFileSync('id', [flag, name], { encoding: 'utf8', stdio: 'pipe' }).trim());
      return { uid: id('-u'), gid: id('-g'), name };
    } catch {
      // try the next one
    }
  }
  throw new Error('running as root, but neither a postgres nor a nobody OS user exists to run pgbouncer as');
}

export interface PgbouncerOptions {
  bin: string;
  /** 127.0.0.1, or the directory of the server's Unix-domain socket. */
  backendHost: string;
  backendPort: number;
  database: string;
  user: string;
  password: string;
  poolSize: number;
}

export interface RunningPgbouncer {
  port: number;
  /** Process id (for CPU accounting). */
  pid: number | undefined;
  config: string;
  stop(): Promise<void>;
}

export async function startPgbouncer(o: PgbouncerOptions): Promise<RunningPgbouncer> {
  const dir = mkdtempSync(path.join(os.tmpdir(), 'pgtenant-bench-pgbouncer-'));
  onCleanup('pgbouncer temp dir', async () => rmSync(dir, { recursive: true, force: true }));
  const port = await freePort();
  const config = [
    '[databases]',
    `${o.database} = host=${o.backendHost} port=${o.backendPort} dbname=${o.database}`,
    '',
    '[pgbouncer]',
    'listen_addr = 127.0.0.1',
    `listen_port = ${port}`,
    'unix_socket_dir =',
    'auth_type = scram-sha-256',
    `auth_file = ${path.join(dir, 'userlist.txt')}`,
    'pool_mode = transaction',
    `default_pool_size = ${o.poolSize}`,
    'max_client_conn = 1000',
    `pidfile = ${path.join(dir, 'pgbouncer.pid')}`,
    'log_connections = 0',
    'log_disconnections = 0',
    'log_pooler_errors = 1',
    'ignore_startup_parameters = extra_float_digits',
    '',
  ].join('\n');
  writeFileSync(path.join(dir, 'pgbouncer.ini'), config);
  // Plain password: PgBouncer then does SCRAM both towards the client and towards Postgres.
  writeFileSync(path.join(dir, 'userlist.txt'), `"${o.user}" "${o.password}"\n`);
  const as = runAs();
  if (as !== undefined) {
    for (const f of ['', 'pgbouncer.ini', 'userlist.txt']) chownSync(path.join(dir, f), as.uid, as.gid);
  }
  const child = spawnTracked(o.bin, [path.join(dir, 'pgbouncer.ini')], { cwd: dir, ...(as && { uid: as.uid, gid: as.gid }) });
  await untilListening(child, port, 'pgbouncer');
  return { port, pid: child.pid, config, stop: () => stopChild(child) };
}
