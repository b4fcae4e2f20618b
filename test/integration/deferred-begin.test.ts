/**
 * A plain BEGIN is answered by pgtenant and reaches the server with the client's next statement
 * (transaction mode). These tests check that the client cannot tell, except that BEGIN alone holds
 * no server connection.
 */
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import pg from 'pg';
import type { Proxy } from '../../src/proxy/proxy.js';
import { APP_ROLE, adminClient, createDatabase, uniqueName } from '../harness/postgres.js';
import { configSchema } from '../../src/config/schema.js';
import { startProxy, startProxyWith, viaProxy } from '../harness/proxy.js';
import { createTenantLayout, tenantConfigInput } from '../harness/tenants.js';

let db: string;
let admin: pg.Client;
let cleanups: (() => Promise<unknown>)[] = [];

beforeAll(async () => {
  db = await createDatabase(uniqueName('defer'), APP_ROLE.user);
  admin = await adminClient(db);
  await admin.query(`create table items (id int primary key, v int not null); alter table items owner to ${APP_ROLE.user}`);
});

afterAll(async () => {
  await admin.end();
  const a = await adminClient();
  await a.query(`drop database if exists ${a.escapeIdentifier(db)} with (force)`);
  await a.end();
});

afterEach(async () => {
  for (const fn of cleanups.reverse()) await fn().catch(() => undefined);
  cleanups = [];
  await admin.query('truncate items');
});

async function proxyWith(pool: Record<string, unknown>): Promise<Proxy> {
  const proxy = await startProxy({ pool: { mode: 'transaction', size: 1, queueTimeout: '2s', ...pool } });
  cleanups.push(() => proxy.close());
  return proxy;
}

async function connect(proxy: Proxy): Promise<pg.Client> {
  const client = new pg.Client(viaProxy(proxy, APP_ROLE.user, APP_ROLE.password, db));
  client.on('error', () => undefined);
  await client.connect();
  cleanups.push(() => client.end());
  return client;
}

/** Server backends of the app role on the test database in `state` ('idle in transaction', …). */
async function backendsIn(state: string): Promise<number> {
  const { rows } = await admin.query<{ n: number }>('select count(*)::int as n from pg_stat_activity where datname = $1 and usename = $2 and state = $3', [db, APP_ROLE.user, state]);
  return rows[0].n;
}

const failure = (p: Promise<unknown>): Promise<pg.DatabaseError | undefined> =>
  p.then(
    () => undefined,
    (e: unknown) => e as pg.DatabaseError,
  );

describe('deferred BEGIN', () => {
  it('holds no server connection between BEGIN and the next statement, then runs the statements in one transaction', async () => {
    const proxy = await proxyWith({});
    const a = await connect(proxy);
    const b = await connect(proxy);
    await a.query('begin');
    // The pool has one connection: had BEGIN taken it, b would wait out the queue timeout.
    expect((await b.query('select 1 as one')).rows).toEqual([{ one: 1 }]);

    await a.query('insert into items values (1, 1)');
    const x1 = (await a.query<{ x: string }>('select pg_current_xact_id()::text as x')).rows[0].x;
    const x2 = (await a.query<{ x: string }>('select pg_current_xact_id()::text as x')).rows[0].x;
    expect(x2).toBe(x1);
    expect(await backendsIn('idle in transaction')).toBe(1);
    expect((await admin.query('select * from items')).rowCount).toBe(0);
    await a.query('rollback');
    expect((await admin.query('select * from items')).rowCount).toBe(0);

    await a.query('BEGIN;');
    await a.query('insert into items values (2, 2)');
    await a.query('END;');
    expect((await admin.query('select id from items')).rows).toEqual([{ id: 2 }]);
  });

  it('answers COMMIT or ROLLBACK right after BEGIN without a server, and leaves nothing open there', async () => {
    const proxy = await proxyWith({});
    const holder = await connect(proxy);
    const a = await connect(proxy);
    await holder.query('begin');
    await holder.query('select 1');
    // The only server connection is busy in holder's transaction: these need none.
    for (const end of ['commit', 'rollback', 'END', 'abort']) {
      await a.query('begin');
      await a.query(end);
    }
    await holder.query('commit');
    expect(await backendsIn('idle in transaction')).toBe(0);
    // The server connection a gets next is not left inside a transaction: its insert commits.
    await a.query('insert into items values (3, 3)');
    expect((await admin.query('select id from items')).rows).toEqual([{ id: 3 }]);
  });

  it('aborts the transaction on an error as Postgres does, until ROLLBACK', async () => {
    const proxy = await proxyWith({});
    const a = await connect(proxy);
    await a.query('begin');
    expect(await failure(a.query('select 1/0'))).toMatchObject({ code: '22012' });
    expect(await failure(a.query('select 1'))).toMatchObject({ code: '25P02' });
    await a.query('rollback');
    expect((await a.query('select 2 as two')).rows).toEqual([{ two: 2 }]);
  });

  it('sends a second BEGIN to the server, which warns that a transaction is in progress', async () => {
    const proxy = await proxyWith({});
    const a = await connect(proxy);
    const notices: string[] = [];
    a.on('notice', (n) => notices.push(n.code ?? ''));
    await a.query('begin');
    await a.query('begin');
    await a.query('insert into items values (4, 4)');
    await a.query('rollback');
    expect(notices).toEqual(['25001']);
    expect((await admin.query('select * from items')).rowCount).toBe(0);
  });

  it('closes a client whose deferred transaction cannot get a server, instead of running its statements outside one', async () => {
    const proxy = await proxyWith({ queueTimeout: '300ms' });
    const holder = await connect(proxy);
    const a = await connect(proxy);
    await holder.query('begin');
    await holder.query('select 1');
    await a.query('begin');
    const ended = new Promise<void>((resolve) => a.once('end', () => resolve()));
    const err = await failure(a.query('insert into items values (5, 5)'));
    expect(err?.code).toBe('57014');
    expect(err?.severity).toBe('FATAL');
    expect(err?.message).toMatch(/transaction could not get a server connection/);
    await ended;
    await holder.query('commit');
    expect((await admin.query('select * from items')).rowCount).toBe(0);
  });

  it('runs the first statement after BEGIN inside the transaction, even one that would share a pipelined connection', async () => {
    const proxy = await proxyWith({ size: 2, multiplex: true, shareBelow: '50ms' });
    await admin.query('insert into items values (1, 0)');
    const a = await connect(proxy);
    // Make the shape known as fast, so that outside a transaction it is pipelined.
    for (let i = 0; i < 20; i++) await a.query('select v from items where id = 1');
    await a.query('begin');
    expect((await a.query('select v from items where id = 1')).rows).toEqual([{ v: 0 }]);
    expect(await backendsIn('idle in transaction')).toBe(1);
    await a.query('update items set v = 7 where id = 1');
    expect((await a.query('select v from items where id = 1')).rows).toEqual([{ v: 7 }]);
    await a.query('rollback');
    expect((await a.query('select v from items where id = 1')).rows).toEqual([{ v: 0 }]);
  });

  it('lets a client in a deferred transaction finish it during a graceful shutdown', async () => {
    const proxy = await proxyWith({ shutdownTimeout: '10s' });
    const a = await connect(proxy);
    const idle = await connect(proxy);
    const idleEnded = new Promise<void>((resolve) => idle.once('end', () => resolve()));
    await a.query('begin');
    const shutdown = proxy.shutdown(10_000);
    await idleEnded;
    await a.query('insert into items values (6, 6)');
    await a.query('commit');
    await shutdown;
    expect((await admin.query('select id from items')).rows).toEqual([{ id: 6 }]);
  });

  it('binds each tenant in its deferred transactions: row tenants taking turns on one server connection see only their rows', async () => {
    const layout = await createTenantLayout();
    cleanups.push(() => layout.drop());
    const proxy = await startProxyWith(configSchema.parse(tenantConfigInput(layout, { pool: { mode: 'transaction', size: 1, queueTimeout: '5s' } })));
    cleanups.push(() => proxy.close());
    const clients = await Promise.all(
      ['r1', 'r2'].map(async (tenant) => {
        const c = new pg.Client({ ...viaProxy(proxy, `${APP_ROLE.user}@${tenant}`), database: APP_ROLE.database });
        await c.connect();
        cleanups.push(() => c.end());
        return { tenant, c };
      }),
    );
    // Two transactions in a row per tenant: the second may find the binding of the first in place.
    for (let round = 0; round < 6; round++) {
      for (const { tenant, c } of round % 2 === 0 ? clients : [clients[0], clients[0], clients[1], clients[1]]) {
        await c.query('begin');
        // Only plain functions: the unit cannot change the binding, so the next one may reuse it.
        const { rows } = await c.query<{ own: number; foreign: number }>(
          'select count(*) filter (where tenant_id = $1)::int as own, count(*) filter (where tenant_id <> $1)::int as foreign from items',
          [tenant],
        );
        expect(rows).toEqual([{ own: 5, foreign: 0 }]);
        await c.query('rollback');
      }
    }
    for (const { tenant, c } of clients) {
      await c.query('begin');
      expect((await c.query("select current_setting('app.tenant_id') as setting")).rows).toEqual([{ setting: tenant }]);
      await expect(c.query("select set_config('app.tenant_id', 'r3', true)")).rejects.toMatchObject({ code: '42501' });
      await c.query('rollback');
    }
  });
});
