/**
 * Attempts to change the tenant context from a tenant's session: each is refused with 42501, and
 * the binding holds for the same client's next statement and for other clients sharing the one
 * server connection (pool size 1).
 */
import pg from 'pg';
import postgres from 'postgres';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { configSchema } from '../../src/config/schema.js';
import type { Proxy } from '../../src/proxy/proxy.js';
import { startProxyWith } from '../harness/proxy.js';
import { APP_ROLE } from '../harness/postgres.js';
import { createTenantLayout, tenantConfigInput, type TenantLayout } from '../harness/tenants.js';

let layout: TenantLayout;
let proxy: Proxy;

const as = (tenant: string) => ({ host: '127.0.0.1', port: proxy.port, user: `${APP_ROLE.user}@${tenant}`, password: APP_ROLE.password, database: APP_ROLE.database });

const COMMON_VECTORS = [
  "set app.tenant_id = 'r2'",
  "SET SESSION app.tenant_id TO 'r2'",
  "set App.Tenant_Id = 'r2'",
  'set "app.tenant_id" = \'r2\'',
  'reset app.tenant_id',
  'RESET ALL',
  "select set_config('app.tenant_id', 'r2', false)",
  "select pg_catalog.set_config('app.tenant_id', 'r2', false)",
  "select \"set_config\"('app.tenant_id', 'r2', false)",
  "select U&\"\\0073et_config\"('app.tenant_id', 'r2', false)",
  "select set_config(U&'\\0061pp.tenant_id', 'r2', false)",
  "select set_config('app.' || 'tenant_id', 'r2', false)",
  "with x as (select set_config('app.tenant_id', 'r2', false)) select * from x",
  "select 1; set app.tenant_id = 'r2'",
  "SET/**/app.tenant_id = 'r2'",
  "set request.jwt.claims = '{\"tenant_id\":\"r2\"}'",
  "select set_config('request.jwt.claims', '{}', false)",
  'set role postgres',
  'set role none',
  'reset role',
  "select set_config('role', 'postgres', false)",
  'set session authorization postgres',
  'reset session authorization',
  "prepare p as select set_config('app.tenant_id', 'r2', false)",
  "explain analyze select set_config('app.tenant_id', 'r2', false)",
];

const SCHEMA_VECTORS = ["set search_path = tenant_s2", "select set_config('search_path', 'tenant_s2', false)", "SET SCHEMA 'tenant_s2'", 'reset search_path'];

beforeAll(async () => {
  layout = await createTenantLayout();
  proxy = await startProxyWith(configSchema.parse(tenantConfigInput(layout, { pool: { mode: 'transaction', size: 1, queueTimeout: '10s' } })));
});

afterAll(async () => {
  await proxy?.close();
  await layout?.drop();
});

/** The binding as a client sees it: its setting, search_path, role, and whether any row is foreign. */
async function bindingOf(c: pg.Client, tenant: string): Promise<void> {
  const r = await c.query<{ setting: string; foreign: number; mine: number }>(
    "select current_setting('app.tenant_id') as setting, count(*) filter (where tenant_id <> $1)::int as foreign, count(*) filter (where tenant_id = $1)::int as mine from items",
    [tenant],
  );
  expect(r.rows[0]).toMatchObject({ setting: tenant, foreign: 0 });
  expect(r.rows[0].mine).toBeGreaterThan(0);
}

describe.each([
  ['r1', COMMON_VECTORS],
  ['s1', [...COMMON_VECTORS, ...SCHEMA_VECTORS]],
])('tenant %s', (tenant, vectors) => {
  it.each(vectors)('refuses %s (simple and extended) and keeps the binding', async (statement) => {
    const c = new pg.Client(as(tenant));
    const bystander = new pg.Client(as('r3'));
    await c.connect();
    await bystander.connect();
    const before = proxy.blockedStatements;
    try {
      await expect(c.query(statement)).rejects.toMatchObject({ code: '42501' });
      await bindingOf(c, tenant);
      await bindingOf(bystander, 'r3');
      // Inside a transaction: refused, the transaction fails like any error, and ROLLBACK recovers it.
      await c.query('begin');
      await expect(c.query(statement)).rejects.toMatchObject({ code: '42501' });
      await expect(c.query('select 1')).rejects.toMatchObject({ code: '25P02' });
      await c.query('rollback');
      await bindingOf(c, tenant);
    } finally {
      await c.end();
      await bystander.end();
    }
    // Extended protocol (Parse/Bind/Execute).
    const sql = postgres({ ...as(tenant), max: 1, onnotice: () => undefined });
    try {
      if (!statement.includes(';')) await expect(sql.unsafe(statement, [], { prepare: true })).rejects.toMatchObject({ code: '42501' });
      const [row] = await sql`select current_setting('app.tenant_id') as setting, count(*) filter (where tenant_id <> ${tenant})::int as foreign from items`;
      expect(row).toMatchObject({ setting: tenant, foreign: 0 });
    } finally {
      await sql.end();
    }
    expect(proxy.blockedStatements).toBeGreaterThan(before);
  });
});

describe('what stays allowed', () => {
  it('ordinary settings, set_config of other names, DISCARD ALL on its own', async () => {
    const c = new pg.Client(as('r1'));
    await c.connect();
    try {
      await c.query("set statement_timeout = '5s'");
      await c.query("select set_config('myapp.locale', 'fr', false)");
      await c.query("update items set name = name where id = 1");
      await c.query('discard all');
      await bindingOf(c, 'r1');
      await c.query('set search_path = public');
      await bindingOf(c, 'r1');
    } finally {
      await c.end();
    }
  });

  it('a set_config of the tenant setting as a parameter name is refused in the extended protocol', async () => {
    const c = new pg.Client(as('r1'));
    await c.connect();
    try {
      await expect(c.query('select set_config($1, $2, false)', ['app.tenant_id', 'r2'])).rejects.toMatchObject({ code: '42501' });
      await bindingOf(c, 'r1');
    } finally {
      await c.end();
    }
  });
});
