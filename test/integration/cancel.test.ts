import { spawn } from 'node:child_process';
import net from 'node:net';
import { performance } from 'node:perf_hooks';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import pg from 'pg';
import postgres from 'postgres';
import type { Proxy } from '../../src/proxy/proxy.js';
import { pgBin, runPsql } from '../harness/binaries.js';
import { APP_ROLE, adminClient, uniqueName } from '../harness/postgres.js';
import { startProxy, viaProxy } from '../harness/proxy.js';

/**
 * Query cancellation through the proxy in transaction mode: postgres.js query.cancel(),
 * node-postgres (its own cancel and a raw CancelRequest with the BackendKeyData the proxy gave),
 * psql on SIGINT. A cancel stops the right query within 2 s with 57014 and leaves the client usable;
 * a CancelRequest with a wrong key, or for a client that holds no server connection, stops nothing.
 */

const CANCEL_LIMIT_MS = 2000;
const PSQL_ENV = { PGPASSWORD: APP_ROLE.password, PGSSLMODE: 'disable', PGCONNECT_TIMEOUT: '5' };

let proxy: Proxy;
/** Superuser connection straight to Postgres, to watch pg_stat_activity. */
let admin: pg.Client;
const opened: pg.Client[] = [];
const sqls: postgres.Sql[] = [];

async function pgClient(): Promise<pg.Client> {
  const c = new pg.Client(viaProxy(proxy));
  c.on('error', () => undefined);
  await c.connect();
  opened.push(c);
  return c;
}

function pgjs(): postgres.Sql {
  const o = viaProxy(proxy);
  const sql = postgres({ host: o.host, port: o.port, user: o.user, password: o.password, database: o.database, max: 1, onnotice: () => undefined });
  sqls.push(sql);
  return sql;
}

/** The BackendKeyData node-postgres received (from the proxy). */
function backendKey(c: pg.Client): { pid: number; secret: number } {
  const k = c as unknown as { processID: number | null; secretKey: number | null };
  expect(typeof k.processID).toBe('number');
  expect(typeof k.secretKey).toBe('number');
  return { pid: k.processID!, secret: k.secretKey! };
}

/** Sends a CancelRequest (int32 16, int32 80877102, pid, secret) to the proxy; resolves when the proxy closes the socket. */
function sendCancel(pid: number, secret: number): Promise<void> {
  return new Promise((resolve, reject) => {
    const packet = Buffer.alloc(16);
    packet.writeInt32BE(16, 0);
    packet.writeInt32BE(80877102, 4);
    packet.writeInt32BE(pid, 8);
    packet.writeInt32BE(secret | 0, 12);
    const socket = net.connect({ host: '127.0.0.1', port: proxy.port }, () => socket.write(packet));
    socket.setTimeout(5000, () => {
      socket.destroy();
      reject(new Error('the proxy did not close the cancel connection within 5 s'));
    });
    socket.on('data', (d: Buffer) => {
      socket.destroy();
      reject(new Error(`the proxy answered a CancelRequest with ${d.length} bytes`));
    });
    socket.on('error', reject);
    socket.on('close', () => resolve());
  });
}

/** Waits until Postgres runs a statement containing `marker`; returns that server process's pid. */
async function waitActive(marker: string): Promise<number> {
  const deadline = performance.now() + 5000;
  for (;;) {
    const r = await admin.query<{ pid: number }>(
      "select pid from pg_stat_activity where state = 'active' and pid <> pg_backend_pid() and strpos(query, $1) > 0",
      [marker],
    );
    if (r.rows.length > 0) return r.rows[0].pid;
    if (performance.now() > deadline) {
      // Whether it ran and ended already (a stray cancel?) or never reached the server (a stall).
      const seen = await admin.query<{ state: string }>("select state from pg_stat_activity where pid <> pg_backend_pid() and strpos(query, $1) > 0", [marker]);
      throw new Error(`no active statement with ${marker} after 5 s (sessions whose last statement it is: ${JSON.stringify(seen.rows.map((x) => x.state))})`);
    }
    await new Promise((res) => setTimeout(res, 10));
  }
}

/** Whether Postgres still runs a statement containing `marker`. */
async function stillActive(marker: string): Promise<boolean> {
  const r = await admin.query("select 1 from pg_stat_activity where state = 'active' and pid <> pg_backend_pid() and strpos(query, $1) > 0", [marker]);
  return r.rows.length > 0;
}

type Outcome<T> = { ok: true; value: T } | { ok: false; error: Error & { code?: string } };

function settle<T>(p: PromiseLike<T>): Promise<Outcome<T>> {
  return Promise.resolve(p).then(
    (value) => ({ ok: true as const, value }),
    (error: unknown) => ({ ok: false as const, error: error as Error & { code?: string } }),
  );
}

function expectCancelled<T>(o: Outcome<T>): void {
  expect(o.ok, o.ok ? 'the query completed instead of being cancelled' : '').toBe(false);
  if (!o.ok) {
    expect(o.error.code, o.error.message).toBe('57014');
    expect(o.error.message).toMatch(/canceling statement due to user request/);
  }
}

describe('query cancellation through the proxy (transaction mode)', () => {
  beforeAll(async () => {
    proxy = await startProxy();
    admin = await adminClient(APP_ROLE.database);
  });

  afterAll(async () => {
    await Promise.allSettled(sqls.map((s) => s.end({ timeout: 1 })));
    await Promise.allSettled(opened.map((c) => c.end()));
    await admin?.end();
    await proxy?.close();
  });

  it('postgres.js: query.cancel() stops pg_sleep(30) with 57014 in under 2 s; the client keeps working', async () => {
    const sql = pgjs();
    const tag = uniqueName('cancel_pgjs');
    const t0 = performance.now();
    const q = sql.unsafe(`select pg_sleep(30) /* ${tag} */`);
    const outcome = settle(q);
    await waitActive(tag);
    q.cancel();
    const o = await outcome;
    const elapsed = performance.now() - t0;
    expectCancelled(o);
    expect(elapsed).toBeLessThan(CANCEL_LIMIT_MS);
    expect(await stillActive(tag)).toBe(false);

    expect([...(await sql`select ${41}::int + 1 as n`)]).toEqual([{ n: 42 }]);
    // Twice in a row on the same connection.
    const tag2 = uniqueName('cancel_pgjs');
    const t1 = performance.now();
    const q2 = sql.unsafe(`select pg_sleep(30) /* ${tag2} */`);
    const outcome2 = settle(q2);
    await waitActive(tag2);
    q2.cancel();
    expectCancelled(await outcome2);
    expect(performance.now() - t1).toBeLessThan(CANCEL_LIMIT_MS);
    expect([...(await sql`select 'again' as s`)]).toEqual([{ s: 'again' }]);
  });

  it("node-postgres: the driver's own cancel (a second Client sending the proxy's BackendKeyData) stops pg_sleep(30)", async () => {
    const c = await pgClient();
    backendKey(c);
    const tag = uniqueName('cancel_pg');
    const t0 = performance.now();
    const query = new pg.Query(`select pg_sleep(30) /* ${tag} */`);
    const outcome = new Promise<Outcome<undefined>>((resolve) => {
      query.on('error', (error: Error) => resolve({ ok: false, error }));
      query.on('end', () => resolve({ ok: true, value: undefined }));
    });
    c.query(query);
    await waitActive(tag);
    // pg's Client#cancel(client, query): connects anew and sends CancelRequest(client.processID, client.secretKey).
    const canceller = new pg.Client(viaProxy(proxy)) as unknown as { cancel(client: pg.Client, query: pg.Query): void };
    canceller.cancel(c, query);
    const o = await outcome;
    const elapsed = performance.now() - t0;
    expectCancelled(o);
    expect(elapsed).toBeLessThan(CANCEL_LIMIT_MS);

    expect((await c.query<{ n: number }>('select $1::int + 1 as n', [41])).rows).toEqual([{ n: 42 }]);
  });

  it('node-postgres: a raw CancelRequest stops pg_sleep(30), also inside a transaction; the client keeps working', async () => {
    const c = await pgClient();
    const key = backendKey(c);

    const tag = uniqueName('cancel_raw');
    const t0 = performance.now();
    const outcome = settle(c.query(`select pg_sleep(30) /* ${tag} */`));
    await waitActive(tag);
    await sendCancel(key.pid, key.secret);
    const o = await outcome;
    const elapsed = performance.now() - t0;
    expectCancelled(o);
    expect(elapsed).toBeLessThan(CANCEL_LIMIT_MS);
    expect((await c.query<{ s: string }>('select $1::text as s', ['after'])).rows).toEqual([{ s: 'after' }]);

    // Inside an explicit transaction: cancelled, the transaction is aborted, ROLLBACK recovers.
    await c.query('begin');
    const tag2 = uniqueName('cancel_raw_tx');
    const t1 = performance.now();
    const outcome2 = settle(c.query(`select pg_sleep(30) /* ${tag2} */`));
    await waitActive(tag2);
    await sendCancel(key.pid, key.secret);
    expectCancelled(await outcome2);
    expect(performance.now() - t1).toBeLessThan(CANCEL_LIMIT_MS);
    await expect(c.query('select 1')).rejects.toMatchObject({ code: '25P02' });
    await c.query('rollback');
    expect((await c.query('select 1 as one')).rows).toEqual([{ one: 1 }]);
  });

  it('psql: SIGINT while pg_sleep(30) runs makes psql cancel it through the proxy in under 2 s', async () => {
    const tag = uniqueName('cancel_psql');
    const t0 = performance.now();
    const child = spawn(
      pgBin('psql'),
      ['-X', '-q', '-h', '127.0.0.1', '-p', String(proxy.port), '-U', APP_ROLE.user, '-d', APP_ROLE.database, '-v', 'VERBOSITY=verbose', '-c', `select pg_sleep(30) /* ${tag} */`],
      { env: { ...process.env, ...PSQL_ENV }, stdio: ['ignore', 'pipe', 'pipe'] },
    );
    let stderr = '';
    child.stderr.setEncoding('utf8').on('data', (s: string) => (stderr += s));
    child.stdout.resume();
    const exited = new Promise<number | null>((resolve) => child.once('close', (code) => resolve(code)));
    const killer = setTimeout(() => child.kill('SIGKILL'), 10_000);
    try {
      await waitActive(tag);
      child.kill('SIGINT');
      const code = await exited;
      const elapsed = performance.now() - t0;
      expect(stderr).toMatch(/ERROR:\s+57014: canceling statement due to user request/);
      expect(code).toBe(1);
      expect(elapsed).toBeLessThan(CANCEL_LIMIT_MS);
    } finally {
      clearTimeout(killer);
      child.kill('SIGKILL');
    }
    expect(await stillActive(tag)).toBe(false);

    const after = await runPsql(['-X', '-q', '-At', '-h', '127.0.0.1', '-p', String(proxy.port), '-U', APP_ROLE.user, '-d', APP_ROLE.database, '-c', 'select 40 + 2'], { env: PSQL_ENV });
    expect(after.stderr).toBe('');
    expect(after.stdout.trim()).toBe('42');
  });

  it('a CancelRequest with a wrong secret or an unknown pid cancels nothing', async () => {
    const victim = await pgClient();
    const key = backendKey(victim);
    const tag = uniqueName('cancel_wrong');
    const t0 = performance.now();
    const outcome = settle(victim.query<{ done: boolean }>(`select pg_sleep(1.5) is null as done /* ${tag} */`));
    await waitActive(tag);
    await sendCancel(key.pid, key.secret ^ 1);
    await sendCancel(key.pid, ~key.secret);
    await sendCancel(key.pid + 1_000_000, key.secret);
    await sendCancel(0, 0);
    const o = await outcome;
    const elapsed = performance.now() - t0;
    expect(o.ok ? undefined : `${o.error.code} ${o.error.message}`).toBeUndefined();
    if (o.ok) expect(o.value.rows).toEqual([{ done: false }]);
    expect(elapsed).toBeGreaterThanOrEqual(1400);
  });

  it("cancels only the targeted client's query, not a concurrent one", async () => {
    const a = await pgClient();
    const b = await pgClient();
    const keyA = backendKey(a);
    const keyB = backendKey(b);
    expect(keyA.pid).not.toBe(keyB.pid);
    const tagA = uniqueName('cancel_target_a');
    const tagB = uniqueName('cancel_target_b');
    const t0 = performance.now();
    const outA = settle(a.query(`select pg_sleep(30) /* ${tagA} */`));
    const outB = settle(b.query<{ done: boolean }>(`select pg_sleep(1.5) is null as done /* ${tagB} */`));
    const [serverA, serverB] = await Promise.all([waitActive(tagA), waitActive(tagB)]);
    expect(serverA).not.toBe(serverB);
    await sendCancel(keyA.pid, keyA.secret);
    expectCancelled(await outA);
    expect(performance.now() - t0).toBeLessThan(CANCEL_LIMIT_MS);
    const ob = await outB;
    expect(ob.ok ? undefined : `${ob.error.code} ${ob.error.message}`).toBeUndefined();
    expect(performance.now() - t0).toBeGreaterThanOrEqual(1400);
  });

  it('a cancel for a client that holds no server connection does not hit the client now using that connection', async () => {
    const idle = await pgClient();
    const busy = await pgClient();
    const idleKey = backendKey(idle);
    // The idle client's last statement ran on this server connection, which went back to the pool.
    const last = await idle.query<{ pid: number }>('select pg_backend_pid() as pid');
    const tag = uniqueName('cancel_stale');
    const t0 = performance.now();
    const outcome = settle(busy.query<{ pid: number }>(`select pg_backend_pid() as pid, pg_sleep(1.5) /* ${tag} */`));
    const serverPid = await waitActive(tag);
    // Idle connections are handed out last-in-first-out: the busy client now uses the idle client's old connection.
    expect(serverPid).toBe(last.rows[0].pid);
    await sendCancel(idleKey.pid, idleKey.secret);
    const o = await outcome;
    expect(o.ok ? undefined : `${o.error.code} ${o.error.message}`).toBeUndefined();
    expect(performance.now() - t0).toBeGreaterThanOrEqual(1400);
    // And the cancel was not remembered for the idle client's next statement either.
    expect((await idle.query('select pg_sleep(0.2) is null as done')).rows).toEqual([{ done: false }]);
  });
});
