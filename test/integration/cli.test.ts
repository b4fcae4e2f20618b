/**
 * The real CLI as a child process (`node --import tsx src/cli.ts`, no build step):
 * `check` exit codes and file:line:col errors, `start` in front of the shared test
 * Postgres, SIGHUP reload without dropping clients, and the SIGTERM drain.
 */
import { spawn, type ChildProcessWithoutNullStreams } from 'node:child_process';
import { mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import pg from 'pg';
import { freePort } from '../harness/ports.js';
import { APP_ROLE, adminClient, backend, uniqueName } from '../harness/postgres.js';

const ROOT = fileURLToPath(new URL('../../', import.meta.url));
const CLI = ['--import', 'tsx', 'src/cli.ts'];
const GOOD = 'test/fixtures/cli-good.yaml';
const BAD = 'test/fixtures/cli-bad.yaml';

const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms));

type PgErr = Error & { code?: string; severity?: string };

// ---- running the CLI ----

interface RunResult {
  code: number | null;
  stdout: string;
  stderr: string;
}

/** Child env without a config path inherited from the developer's shell. */
function cliEnv(): NodeJS.ProcessEnv {
  const env = { ...process.env };
  delete env.PGTENANT_CONFIG;
  return env;
}

/** Runs the CLI to completion (for `check`). */
function runCli(args: string[], timeoutMs = 20_000): Promise<RunResult> {
  return new Promise((resolve, reject) => {
    const child = spawn(process.execPath, [...CLI, ...args], { cwd: ROOT, env: cliEnv(), stdio: ['ignore', 'pipe', 'pipe'] });
    let stdout = '';
    let stderr = '';
    child.stdout.setEncoding('utf8').on('data', (c: string) => (stdout += c));
    child.stderr.setEncoding('utf8').on('data', (c: string) => (stderr += c));
    const timer = setTimeout(() => child.kill('SIGKILL'), timeoutMs);
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

interface LogLine {
  level: number;
  msg: string;
  [key: string]: unknown;
}

/** A long-running `pgtenant start`; its stdout is pino JSON lines (stdout is not a TTY). */
class ProxyProcess {
  readonly logs: LogLine[] = [];
  stdout = '';
  stderr = '';
  readonly exited: Promise<{ code: number | null; signal: NodeJS.Signals | null }>;
  exitedAt: number | null = null;
  private readonly child: ChildProcessWithoutNullStreams;
  private partial = '';
  private waiters: (() => void)[] = [];

  constructor(configFile: string) {
    this.child = spawn(process.execPath, [...CLI, 'start', '--config', configFile], { cwd: ROOT, env: cliEnv(), stdio: 'pipe' });
    this.child.stdin.end();
    this.child.stdout.setEncoding('utf8').on('data', (chunk: string) => {
      this.stdout += chunk;
      const lines = (this.partial + chunk).split('\n');
      this.partial = lines.pop()!;
      for (const line of lines) {
        if (line.trim() === '') continue;
        try {
          this.logs.push(JSON.parse(line) as LogLine);
        } catch {
          this.logs.push({ level: 0, msg: line });
        }
      }
      this.wake();
    });
    this.child.stderr.setEncoding('utf8').on('data', (chunk: string) => (this.stderr += chunk));
    this.exited = new Promise((resolve) => {
      this.child.once('exit', (code, signal) => {
        this.exitedAt = Date.now();
        this.wake();
        resolve({ code, signal });
      });
    });
  }

  get running(): boolean {
    return this.exitedAt === null;
  }

  /** Fails the test, with the exit status, if the process is gone. */
  expectRunning(when: string): void {
    const status = `${this.child.exitCode ?? ''}${this.child.signalCode ?? ''}`;
    expect(this.running, `pgtenant exited (${status}) ${when}`).toBe(true);
  }

  signal(sig: NodeJS.Signals): void {
    this.child.kill(sig);
  }

  /** Index to pass to waitForLog so only lines logged after now count. */
  mark(): number {
    return this.logs.length;
  }

  /** The first log line from `from` on whose msg matches. */
  async waitForLog(msg: string | RegExp, from = 0, timeoutMs = 15_000): Promise<LogLine> {
    const deadline = Date.now() + timeoutMs;
    const matches = (l: LogLine): boolean => (typeof msg === 'string' ? l.msg === msg : msg.test(l.msg));
    for (;;) {
      const found = this.logs.slice(from).find(matches);
      if (found) return found;
      if (!this.running) throw new Error(`pgtenant exited before logging ${String(msg)}\nstdout:\n${this.stdout}\nstderr:\n${this.stderr}`);
      const left = deadline - Date.now();
      if (left <= 0) throw new Error(`timed out waiting for log ${String(msg)}\nstdout:\n${this.stdout}\nstderr:\n${this.stderr}`);
      await new Promise<void>((resolve) => {
        const t = setTimeout(resolve, left);
        this.waiters.push(() => {
          clearTimeout(t);
          resolve();
        });
      });
    }
  }

  async kill(): Promise<void> {
    if (this.running) this.child.kill('SIGKILL');
    await this.exited;
  }

  private wake(): void {
    for (const w of this.waiters.splice(0)) w();
  }
}

// ---- config files ----

interface ConfigOptions {
  port: number;
  users: Record<string, string>;
  pool?: Record<string, string | number>;
}

function configYaml({ port, users, pool = {} }: ConfigOptions): string {
  const pgInfo = backend();
  const lines = [
    'listen:',
    '  host: 127.0.0.1',
    `  port: ${port}`,
    'backends:',
    '  main:',
    `    host: ${pgInfo.host}`,
    `    port: ${pgInfo.port}`,
    'users:',
    ...Object.entries(users).flatMap(([u, pw]) => [`  ${u}:`, `    password: ${JSON.stringify(pw)}`]),
    'pool:',
    '  mode: transaction',
    ...Object.entries(pool).map(([k, v]) => `  ${k}: ${v}`),
    'log:',
    '  level: info',
  ];
  return lines.join('\n') + '\n';
}

let tmpDir: string;
beforeAll(async () => {
  tmpDir = await mkdtemp(path.join(os.tmpdir(), 'pgtenant-cli-'));
});
afterAll(async () => {
  await rm(tmpDir, { recursive: true, force: true });
});

// ---- clients ----

interface Tracked {
  client: pg.Client;
  /** 'error' events (e.g. a FATAL the proxy sends while the client is idle). */
  errors: PgErr[];
  ended: Promise<void>;
}

async function connect(port: number, user: string = APP_ROLE.user, password: string = APP_ROLE.password): Promise<Tracked> {
  const client = new pg.Client({ host: '127.0.0.1', port, user, password, database: APP_ROLE.database });
  const errors: PgErr[] = [];
  client.on('error', (err) => errors.push(err));
  const ended = new Promise<void>((resolve) => client.once('end', () => resolve()));
  await client.connect();
  return { client, errors, ended };
}

/** Connects and runs one query; resolves to the error, or undefined on success. */
async function tryLogin(port: number, user: string, password: string): Promise<PgErr | undefined> {
  const client = new pg.Client({ host: '127.0.0.1', port, user, password, database: APP_ROLE.database, connectionTimeoutMillis: 5000 });
  client.on('error', () => undefined);
  try {
    await client.connect();
    const { rows } = await client.query<{ u: string }>('select current_user as u');
    expect(rows).toEqual([{ u: user }]);
    await client.end();
    return undefined;
  } catch (err) {
    await client.end().catch(() => undefined);
    return err as PgErr;
  }
}

/**
 * The proxy closed the client the way Postgres does on shutdown: an ErrorResponse FATAL 57P01,
 * then the socket closes (which node-postgres reports as a second, code-less error).
 */
function expectAdminShutdown(c: Tracked, message: RegExp): void {
  expect(c.errors.length).toBeGreaterThanOrEqual(1);
  expect(c.errors[0]).toMatchObject({ code: '57P01', severity: 'FATAL' });
  expect(c.errors[0].message).toMatch(message);
  for (const later of c.errors.slice(1)) {
    expect(later.code).toBeUndefined();
    expect(later.message).toMatch(/^Connection terminated/);
  }
}

async function withTimeout<T>(p: Promise<T>, ms: number, what: string): Promise<T> {
  let timer: NodeJS.Timeout | undefined;
  try {
    return await Promise.race([p, new Promise<never>((_, reject) => (timer = setTimeout(() => reject(new Error(`${what}: not within ${ms} ms`)), ms)))]);
  } finally {
    clearTimeout(timer);
  }
}

// ---- tests ----

describe('pgtenant check', () => {
  it('accepts a valid config with exit code 0', async () => {
    const r = await runCli(['check', '--config', GOOD]);
    expect(r.stderr).toBe('');
    expect(r.stdout).toBe(`${GOOD}: ok\n`);
    expect(r.code).toBe(0);
  });

  it('prints every error with file:line:col and exits 1', async () => {
    // The positions asserted below are those of these lines of the fixture.
    const fixture = (await readFile(path.join(ROOT, BAD), 'utf8')).split('\n');
    expect(fixture[4 - 1]).toBe('  port: 99999');
    expect(fixture[9 - 1]).toBe('  mode: statement');
    expect(fixture[10 - 1]).toBe('  sizee: 10');

    const r = await runCli(['check', '--config', BAD]);
    expect(r.code).toBe(1);
    expect(r.stdout).toBe('');
    const lines = r.stderr.trimEnd().split('\n');
    expect(lines).toHaveLength(3);
    // Values are pointed at by their value's column, the unknown key by the key's.
    expect(lines[0]).toBe(`${BAD}:4:9: listen.port: must be at most 65535, got 99999`);
    expect(lines[1]).toBe(`${BAD}:9:9: pool.mode: expected one of session, transaction, got "statement"`);
    expect(lines[2]).toMatch(new RegExp(`^${BAD}:10:3: pool\\.sizee: unknown key "sizee"; allowed keys: .*\\bsize\\b`));
  });

  it('reports a YAML syntax error with file:line and exits 1', async () => {
    const file = path.join(tmpDir, 'syntax.yaml');
    // Line 3 holds the unterminated flow sequence.
    await writeFile(file, ['backends:', '  main:', '    host: [db.internal', '    port: 5432', ''].join('\n'));
    const r = await runCli(['check', '--config', file]);
    expect(r.code).toBe(1);
    expect(r.stdout).toBe('');
    const lines = r.stderr.trimEnd().split('\n');
    expect(lines.length).toBeGreaterThanOrEqual(1);
    for (const line of lines) expect(line).toMatch(new RegExp(`^${file.replace(/[.*+?^${}()|[\]\\]/g, '\\$&')}:\\d+:\\d+: \\S`));
    expect(lines[0]).toMatch(/:[34]:\d+: /);
  });

  it('says clearly that a missing file cannot be read and exits 1', async () => {
    const file = path.join(tmpDir, 'does-not-exist.yaml');
    const r = await runCli(['check', '--config', file]);
    expect(r.code).toBe(1);
    expect(r.stdout).toBe('');
    expect(r.stderr).toContain(file);
    expect(r.stderr).toMatch(/cannot read config file: ENOENT: no such file or directory/);
    expect(r.stderr.trimEnd().split('\n')).toHaveLength(1);
  });
});

describe('pgtenant sql and token', () => {
  it('prints fail-closed RLS SQL for the demo config\'s tenant role', async () => {
    const r = await runCli(['sql', 'rls', '--table', 'public.items', '--column', 'tenant_id']);
    expect(r.code, r.stderr).toBe(0);
    expect(r.stdout).toContain('ALTER TABLE "public"."items" FORCE ROW LEVEL SECURITY;');
    expect(r.stdout).toContain(`USING ("tenant_id" = (select nullif(pg_catalog.current_setting('app.tenant_id', true), '')::text))`);
    expect(r.stdout).toContain('TO "web";');
  });

  it('prints a tenant schema with its own role', async () => {
    const r = await runCli(['sql', 'schema', '--tenant', 'globex']);
    expect(r.code, r.stderr).toBe(0);
    expect(r.stdout).toContain('CREATE SCHEMA IF NOT EXISTS "tenant_globex";');
    expect(r.stdout).toContain('CREATE ROLE "tenant_globex" NOLOGIN NOBYPASSRLS;');
  });

  it('refuses missing arguments with exit 1', async () => {
    const r = await runCli(['sql', 'rls', '--column', 'tenant_id']);
    expect(r.code).toBe(1);
    expect(r.stderr).toContain('--table is required');
  });

  it('mints a token naming the tenant', async () => {
    const r = await runCli(['token', '--tenant', 'initech', '--ttl', '60']);
    expect(r.code, r.stderr).toBe(0);
    const payload = JSON.parse(Buffer.from(r.stdout.trim().split('.')[1], 'base64url').toString()) as { tenant_id: string; exp: number };
    expect(payload.tenant_id).toBe('initech');
    expect(payload.exp - Date.now() / 1000).toBeLessThanOrEqual(61);
  });
});

describe('pgtenant start and SIGHUP reload', () => {
  let proc: ProxyProcess;
  let port: number;
  let configFile: string;
  const second = { user: uniqueName('cli_second'), password: 'second-pw' };
  const table = uniqueName('cli_reload');
  const clients: Tracked[] = [];

  beforeAll(async () => {
    const admin = await adminClient();
    try {
      await admin.query(`CREATE ROLE ${second.user} LOGIN PASSWORD '${second.password}'`);
    } finally {
      await admin.end();
    }
    port = await freePort();
    configFile = path.join(tmpDir, 'reload.yaml');
    // One server connection: a client in a transaction holds it, so the pool's size is observable.
    await writeFile(configFile, configYaml({ port, users: { [APP_ROLE.user]: APP_ROLE.password }, pool: { size: 1, queueTimeout: '500ms' } }));
    proc = new ProxyProcess(configFile);
    const listening = await proc.waitForLog('pgtenant listening');
    expect(listening.port).toBe(port);
  });

  afterAll(async () => {
    for (const c of clients) await c.client.end().catch(() => undefined);
    await proc?.kill();
    const appDb = await adminClient(APP_ROLE.database);
    try {
      await appDb.query(`DROP TABLE IF EXISTS ${table}`).catch(() => undefined);
    } finally {
      await appDb.end();
    }
    const admin = await adminClient();
    try {
      await admin.query(`DROP ROLE IF EXISTS ${second.user}`).catch(() => undefined);
    } finally {
      await admin.end();
    }
  });

  it('serves a node-postgres client', async () => {
    const c = await connect(port);
    clients.push(c);
    const r = await c.client.query('select current_user as u, $1::int + 1 as n', [41]);
    expect(r.rows).toEqual([{ u: APP_ROLE.user, n: 42 }]);
    await c.client.query(`create table ${table} (id int primary key)`);
  });

  it('reloads on SIGHUP without dropping an idle client or an open transaction', async () => {
    const idle = clients[0];
    const inTx = await connect(port);
    clients.push(inTx);
    await inTx.client.query('BEGIN');
    await inTx.client.query(`insert into ${table} values (1)`);

    // Before the reload: the only server connection is held, so another query waits and times out…
    const probe = await connect(port);
    clients.push(probe);
    await expect(probe.client.query('select 1')).rejects.toMatchObject({ code: '57014' });
    // …and the second user is unknown.
    expect(await tryLogin(port, second.user, second.password)).toMatchObject({ code: '28P01' });

    await writeFile(
      configFile,
      configYaml({ port, users: { [APP_ROLE.user]: APP_ROLE.password, [second.user]: second.password }, pool: { size: 3, queueTimeout: '500ms' } }),
    );
    const mark = proc.mark();
    proc.signal('SIGHUP');
    await proc.waitForLog('configuration reloaded', mark);
    await sleep(100);
    proc.expectRunning('after SIGHUP');

    // The transaction is still open (on its original server connection) while others now get a second one.
    expect((await idle.client.query('select 2 as n')).rows).toEqual([{ n: 2 }]);
    expect((await probe.client.query('select 3 as n')).rows).toEqual([{ n: 3 }]);
    await inTx.client.query(`insert into ${table} values (2)`);
    expect((await inTx.client.query('select count(*)::int as n from ' + table)).rows).toEqual([{ n: 2 }]);
    expect((await idle.client.query('select count(*)::int as n from ' + table)).rows).toEqual([{ n: 0 }]);
    await inTx.client.query('COMMIT');
    expect((await idle.client.query(`select array_agg(id order by id) as ids from ${table}`)).rows).toEqual([{ ids: [1, 2] }]);

    expect(await tryLogin(port, second.user, second.password)).toBeUndefined();
    for (const c of clients) expect(c.errors).toEqual([]);
    expect(proc.running).toBe(true);
  });

  it('keeps the running config when the reloaded file is invalid', async () => {
    proc.expectRunning('before this test');
    const idle = clients[0];
    const inTx = clients[1];
    await inTx.client.query('BEGIN');
    await inTx.client.query(`insert into ${table} values (3)`);

    // Line 3 of the file is the bad port.
    await writeFile(configFile, ['listen:', '  host: 127.0.0.1', '  port: banana', 'backends: {}', ''].join('\n'));
    const mark = proc.mark();
    proc.signal('SIGHUP');
    const failed = await proc.waitForLog(/^config reload failed; keeping the running configuration/, mark);
    expect(failed.level).toBe(50);
    expect(String(failed.errors)).toContain(`${configFile}:3:9: listen.port: expected a number, got "banana"`);
    expect(String(failed.errors)).toMatch(new RegExp(`${configFile.replace(/[.*+?^${}()|[\]\\]/g, '\\$&')}:4:\\d+: backends: at least one backend is required`));
    await sleep(100);
    proc.expectRunning('after SIGHUP with an invalid file');
    expect(proc.logs.slice(mark).some((l) => l.msg === 'configuration reloaded')).toBe(false);

    // Still serving with the previous configuration: existing clients, the transaction, and both users.
    expect((await idle.client.query('select 4 as n')).rows).toEqual([{ n: 4 }]);
    await inTx.client.query('COMMIT');
    expect((await idle.client.query(`select array_agg(id order by id) as ids from ${table}`)).rows).toEqual([{ ids: [1, 2, 3] }]);
    expect(await tryLogin(port, APP_ROLE.user, APP_ROLE.password)).toBeUndefined();
    expect(await tryLogin(port, second.user, second.password)).toBeUndefined();
    for (const c of clients) expect(c.errors).toEqual([]);
    expect(proc.running).toBe(true);
  });
});

describe('pgtenant SIGTERM drain', () => {
  let proc: ProxyProcess | undefined;
  const clients: Tracked[] = [];

  afterEach(async () => {
    for (const c of clients.splice(0)) await c.client.end().catch(() => undefined);
    await proc?.kill();
    proc = undefined;
  });

  async function startWith(name: string, shutdownTimeout: string): Promise<{ port: number; proc: ProxyProcess }> {
    const port = await freePort();
    const file = path.join(tmpDir, name);
    await writeFile(file, configYaml({ port, users: { [APP_ROLE.user]: APP_ROLE.password }, pool: { size: 4, shutdownTimeout } }));
    proc = new ProxyProcess(file);
    await proc.waitForLog('pgtenant listening');
    return { port, proc };
  }

  it('lets a running transaction finish, refuses new connections, closes idle clients with 57P01, exits 0', async () => {
    const table = uniqueName('cli_drain');
    const DEADLINE_MS = 5000;
    const { port, proc } = await startWith('drain.yaml', `${DEADLINE_MS}ms`);

    const idle = await connect(port);
    clients.push(idle);
    await idle.client.query(`create table ${table} (id int)`);
    const inTx = await connect(port);
    clients.push(inTx);
    await inTx.client.query('BEGIN');
    await inTx.client.query(`insert into ${table} values (1)`);
    const sleeping = inTx.client.query('select pg_sleep(1) as s');
    sleeping.catch(() => undefined); // awaited below; no unhandled rejection if the test fails first
    await sleep(100);

    const mark = proc.mark();
    const signalledAt = Date.now();
    proc.signal('SIGTERM');
    await proc.waitForLog(/^draining/, mark);
    // The line is logged just before the listener closes; a connection racing that close would
    // sit in the accept backlog and be reset (ECONNRESET), so give the close a moment.
    await sleep(100);
    proc.expectRunning('while a transaction was still running (drain not honoured)');

    // The listener is closed: new connections are refused at the TCP level.
    const refused = await tryLogin(port, APP_ROLE.user, APP_ROLE.password);
    expect(refused).toMatchObject({ code: 'ECONNREFUSED' });

    // The idle client is told why it goes away: FATAL 57P01, then the connection closes.
    await withTimeout(idle.ended, 2000, 'idle client closed');
    expectAdminShutdown(idle, /terminating connection due to administrator command: pgtenant is shutting down/);

    // The transaction in flight goes on: the statement completes, more statements run, COMMIT succeeds.
    expect((await sleeping).rows).toEqual([{ s: '' }]);
    expect(proc.running).toBe(true);
    await inTx.client.query(`insert into ${table} values (2)`);
    await inTx.client.query('COMMIT');
    // Once idle, it is closed the same way.
    await withTimeout(inTx.ended, 2000, 'transaction client closed after COMMIT');
    expectAdminShutdown(inTx, /pgtenant is shutting down/);

    const exit = await withTimeout(proc.exited, DEADLINE_MS, 'pgtenant exit after SIGTERM');
    expect(exit).toEqual({ code: 0, signal: null });
    expect(proc.exitedAt! - signalledAt).toBeLessThan(DEADLINE_MS);

    const admin = await adminClient(APP_ROLE.database);
    try {
      expect((await admin.query(`select array_agg(id order by id) as ids from ${table}`)).rows).toEqual([{ ids: [1, 2] }]);
      await admin.query(`drop table ${table}`);
    } finally {
      await admin.end();
    }
  });

  it('closes a transaction that outlives the drain deadline and still exits 0', async () => {
    const { port, proc } = await startWith('drain-deadline.yaml', '700ms');
    const stuck = await connect(port);
    clients.push(stuck);
    await stuck.client.query('BEGIN');
    await stuck.client.query('select 1');

    const signalledAt = Date.now();
    proc.signal('SIGTERM');
    await sleep(300);
    proc.expectRunning('300 ms after SIGTERM, before the 700 ms drain deadline');
    await withTimeout(stuck.ended, 5000, 'client in a transaction closed at the deadline');
    expect(Date.now() - signalledAt).toBeGreaterThanOrEqual(600);
    expectAdminShutdown(stuck, /terminating connection due to administrator command: pgtenant shutdown deadline reached/);

    const exit = await withTimeout(proc.exited, 5000, 'pgtenant exit after the drain deadline');
    expect(exit).toEqual({ code: 0, signal: null });
  });
});
