/**
 * The tenant context on PostgreSQL 15, which, unlike 18, does not report search_path: nothing the
 * server says tells pgtenant that a schema tenant's search_path is still on a connection, or that
 * a binding must be sent again. Without care a unit then runs under the context of whichever
 * tenant used the connection before: a binding that failed on a shared (pipelined) connection must
 * never be taken as in place, and a schema tenant's search_path must not outlive its binding.
 */
import pg from 'pg';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { configSchema } from '../../src/config/schema.js';
import { rlsSql, schemaSql } from '../../src/tenancy/setup-sql.js';
import type { Proxy } from '../../src/proxy/proxy.js';
import { startProxyWith } from '../harness/proxy.js';
import { startCluster, type Cluster } from '../harness/replication.js';

const LOGIN = { user: 'app', password: 'secret', database: 'app' };
/** A second database whose schema tenant has no role of its own: search_path alone separates it. */
const NO_ROLES = 'noroles';

let cluster: Cluster;
/** Multiplexing on `app`, schema tenants with roles. */
let proxy: Proxy;
/** One server connection on `noroles`, for row and schema tenants and the exempt owner alike. */
let single: Proxy;

async function sqlOn(database: string, ...statements: string[]): Promise<void> {
  const c = new pg.Client({ host: '127.0.0.1', port: cluster.primary.port, user: 'postgres', database });
  await c.connect();
  try {
    for (const statement of statements) await c.query(statement);
  } finally {
    await c.end();
  }
}

const items = (schema: string, rows: string[][]): string => `CREATE TABLE ${schema}.items (tenant_id text, id int, name text); INSERT INTO ${schema}.items VALUES ${rows.map(([t, name]) => `('${t}', 1, '${name}')`).join(', ')}`;

beforeAll(async () => {
  cluster = await startCluster(0);
  await sqlOn('postgres', `CREATE ROLE ${LOGIN.user} LOGIN PASSWORD '${LOGIN.password}'`, `CREATE ROLE owner LOGIN`, `CREATE DATABASE ${LOGIN.database}`, `CREATE DATABASE ${NO_ROLES}`);
  // s1 is set up as `pgtenant sql schema` says; s9 is configured but its tenant role was never created.
  await sqlOn(LOGIN.database, `CREATE SCHEMA tenant_s1; ${items('tenant_s1', [['s1', 's1-1']])}`, `CREATE SCHEMA tenant_s9; ${items('tenant_s9', [['s9', 's9-1']])}`);
  await sqlOn(LOGIN.database, schemaSql({ tenant: 's1', schema: 'tenant_{tenant}', loginRole: LOGIN.user, tenantRole: 'role_{tenant}' }));
  await sqlOn(
    NO_ROLES,
    items('public', [['r1', 'r1-1'], ['r2', 'r2-1']]),
    rlsSql({ table: 'public.items', column: 'tenant_id', columnType: 'text', setting: 'app.tenant_id', role: LOGIN.user }),
    `CREATE SCHEMA tenant_s1; ${items('tenant_s1', [['s1', 's1-secret']])}`,
    schemaSql({ tenant: 's1', schema: 'tenant_{tenant}', loginRole: LOGIN.user }),
  );
  const base = {
    listen: { host: '127.0.0.1', port: 0 },
    backends: { main: { host: '127.0.0.1', port: cluster.primary.port, user: LOGIN.user, password: LOGIN.password } },
    users: { [LOGIN.user]: { password: LOGIN.password }, owner: { password: 'owner', tenancy: 'exempt', backendUser: LOGIN.user } },
    log: { level: 'silent' },
  };
  proxy = await startProxyWith(configSchema.parse({
    ...base,
    pool: { mode: 'transaction', size: 2, queueTimeout: '10s', multiplex: true, sharedConnections: 1, shareBelow: '500ms' },
    tenancy: {
      placements: { schema: { database: LOGIN.database, schema: 'tenant_{tenant}', role: 'role_{tenant}' } },
      default: 'schema',
      tenants: { s1: { placement: 'schema' }, s9: { placement: 'schema' } },
    },
  }));
  single = await startProxyWith(configSchema.parse({
    ...base,
    pool: { mode: 'transaction', size: 1, queueTimeout: '10s' },
    tenancy: {
      placements: { row: { database: NO_ROLES }, schema: { database: NO_ROLES, schema: 'tenant_{tenant}' } },
      default: 'row',
      tenants: { s1: { placement: 'schema' }, r1: { placement: 'row' } },
    },
  }));
}, 120_000);

afterAll(async () => {
  await proxy?.close();
  await single?.close();
  await cluster?.stop();
});

const login = (tenant: string) => ({ host: '127.0.0.1', port: proxy.port, user: `${LOGIN.user}@${tenant}`, password: LOGIN.password, database: LOGIN.database });

describe('tenant binding on a shared connection', () => {
  it('a binding that failed is sent again by the next unit of its tenant, which never runs under another tenant\'s context', async () => {
    const s1 = new pg.Client(login('s1'));
    await s1.connect();
    try {
      // Measured fast (the first run has a connection of its own), then shared.
      for (let i = 0; i < 3; i++) expect((await s1.query('select name from items where id = 1')).rows).toEqual([{ name: 's1-1' }]);
      const sharedBefore = proxy.usage.sharedUnits;
      for (const attempt of [1, 2, 3]) {
        const s9 = new pg.Client(login('s9'));
        s9.on('error', () => undefined);
        await s9.connect();
        const result = await s9.query('select name from items where id = 1').then((r) => r.rows, (e: { code?: string }) => e.code);
        expect(result, `attempt ${attempt}`).toBe('08006');
        await s9.end().catch(() => undefined);
      }
      expect(proxy.usage.sharedUnits - sharedBefore).toBe(3);
      expect((await s1.query('select name from items where id = 1')).rows).toEqual([{ name: 's1-1' }]);
    } finally {
      await s1.end();
    }
  });

  it('a unit pipelined behind its tenant\'s still unanswered binding fails with it: it never runs under another tenant\'s context', async () => {
    const s1 = new pg.Client(login('s1'));
    await s1.connect();
    const clients = [new pg.Client(login('s9')), new pg.Client(login('s9'))];
    const locker = new pg.Client({ host: '127.0.0.1', port: cluster.primary.port, user: 'postgres', database: LOGIN.database });
    await locker.connect();
    try {
      for (const c of clients) {
        c.on('error', () => undefined);
        await c.connect();
      }
      for (let i = 0; i < 3; i++) await s1.query('select name from items where id = 1');
      // s1's unit waits for the lock at the head of the pipeline, so both s9 units are sent behind
      // it before the first one's binding is answered: the second takes that binding as in place.
      await locker.query('begin');
      await locker.query('lock table tenant_s1.items in access exclusive mode');
      const sharedBefore = proxy.usage.sharedUnits;
      const head = s1.query('select name from items where id = 1');
      await new Promise((r) => setTimeout(r, 100));
      const first = clients[0].query('select name from items where id = 1').then((r) => r.rows, (e: { code?: string }) => e.code);
      await new Promise((r) => setTimeout(r, 50));
      const second = clients[1].query('select name from items where id = 1').then((r) => r.rows, (e: { code?: string }) => e.code);
      await new Promise((r) => setTimeout(r, 50));
      expect(proxy.usage.sharedUnits - sharedBefore).toBe(3);
      await locker.query('commit');
      expect((await head).rows).toEqual([{ name: 's1-1' }]);
      expect(await first).toBe('08006');
      expect(await second).toBe('08006');
    } finally {
      await locker.end();
      for (const c of clients) await c.end().catch(() => undefined);
      await s1.end();
    }
  });
});

describe('search_path across placements on one server connection', () => {
  const as = (user: string, password = LOGIN.password) => ({ host: '127.0.0.1', port: single.port, user, password, database: NO_ROLES });

  it('a row tenant, or the exempt owner, after a schema tenant does not resolve names through its schema', async () => {
    const s1 = new pg.Client(as('app@s1'));
    await s1.connect();
    try {
      expect((await s1.query('select name from items')).rows).toEqual([{ name: 's1-secret' }]);
    } finally {
      await s1.end();
    }
    // The only server connection now had s1's binding; its search_path must not carry over.
    const r1 = new pg.Client(as('app@r1'));
    await r1.connect();
    try {
      expect((await r1.query('select name from items')).rows).toEqual([{ name: 'r1-1' }]);
      expect((await r1.query('show search_path')).rows).toEqual([{ search_path: '"$user", public' }]);
    } finally {
      await r1.end();
    }
    const s1Again = new pg.Client(as('app@s1'));
    await s1Again.connect();
    await s1Again.query('select name from items');
    await s1Again.end();
    const owner = new pg.Client(as('owner', 'owner'));
    await owner.connect();
    try {
      expect((await owner.query('show search_path')).rows).toEqual([{ search_path: '"$user", public' }]);
    } finally {
      await owner.end();
    }
  });
  it('a SET by the exempt owner does not reach a tenant on the same server connection', async () => {
    const owner = new pg.Client(as('owner', 'owner'));
    await owner.connect();
    const r1 = new pg.Client(as('app@r1'));
    await r1.connect();
    try {
      const before = (await r1.query('show work_mem')).rows[0].work_mem as string;
      await owner.query("set work_mem = '1234kB'");
      expect((await r1.query('show work_mem')).rows).toEqual([{ work_mem: before }]);
      expect((await r1.query('select name from items')).rows).toEqual([{ name: 'r1-1' }]);
    } finally {
      await owner.end();
      await r1.end();
    }
  });
});
