/**
 * Tenant isolation through the proxy, for each placement (row/RLS, schema, database) and each way a
 * client talks: simple queries, extended queries, named prepared statements reused across pooled
 * server connections, and COPY. Every row a tenant gets back is checked to be its own.
 */
import pg from 'pg';
import postgres from 'postgres';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { configSchema } from '../../src/config/schema.js';
import type { Proxy } from '../../src/proxy/proxy.js';
import { startProxyWith } from '../harness/proxy.js';
import { runPsql } from '../harness/binaries.js';
import { APP_ROLE, adminClient } from '../harness/postgres.js';
import { ALL_TENANTS, ROW_TENANTS, SEED_ROWS, createTenantLayout, tenantConfigInput, type TenantLayout } from '../harness/tenants.js';

let layout: TenantLayout;
let proxy: Proxy;

const as = (tenant: string) => ({ host: '127.0.0.1', port: proxy.port, user: `${APP_ROLE.user}@${tenant}`, password: APP_ROLE.password, database: APP_ROLE.database });

async function withClient<T>(tenant: string, fn: (c: pg.Client) => Promise<T>): Promise<T> {
  const c = new pg.Client(as(tenant));
  await c.connect();
  try {
    return await fn(c);
  } finally {
    await c.end();
  }
}

/** Rows of `tenant` as Postgres stores them, read directly (not through the proxy). */
async function storedRows(tenant: string): Promise<{ id: number; name: string }[]> {
  const c = await adminClient(layout.databaseOf(tenant));
  try {
    const table = tenant.startsWith('s') ? `tenant_${tenant}.items` : 'items';
    const r = await c.query<{ id: number; name: string }>(`select id, name from ${table} where tenant_id = $1 order by id`, [tenant]);
    return r.rows;
  } finally {
    await c.end();
  }
}

function expectOnlyOwn(tenant: string, rows: { tenant_id: string }[]): void {
  expect(rows.length).toBeGreaterThan(0);
  for (const row of rows) expect(row.tenant_id).toBe(tenant);
}

beforeAll(async () => {
  layout = await createTenantLayout();
  proxy = await startProxyWith(configSchema.parse(tenantConfigInput(layout, { pool: { mode: 'transaction', size: 4, queueTimeout: '10s' } })));
});

afterAll(async () => {
  await proxy?.close();
  await layout?.drop();
});

describe.each(['r1', 's1', 'd1'])('tenant %s', (tenant) => {
  const other = tenant === 'r1' ? 'r2' : tenant === 's1' ? 's2' : 'd2';

  it('simple queries see only its rows', async () => {
    const rows = await withClient(tenant, async (c) => (await c.query<{ tenant_id: string; id: number }>('select tenant_id, id from items order by id')).rows);
    expectOnlyOwn(tenant, rows);
    expect(rows.map((r) => r.id).slice(0, SEED_ROWS)).toEqual([1, 2, 3, 4, 5]);
  });

  it('extended queries see only its rows, and the tenant setting is its own', async () => {
    await withClient(tenant, async (c) => {
      const r = await c.query<{ tenant_id: string; setting: string }>("select tenant_id, current_setting('app.tenant_id') as setting from items where id >= $1", [1]);
      expectOnlyOwn(tenant, r.rows);
      for (const row of r.rows) expect(row.setting).toBe(tenant);
    });
  });

  it('named prepared statements reused across server connections stay with the tenant', async () => {
    const pids = new Set<number>();
    const noise = ['r3', 's3', 'd2'].map(async (t) => {
      await withClient(t, async (c) => {
        for (let i = 0; i < 40; i++) expectOnlyOwn(t, (await c.query<{ tenant_id: string }>({ name: 'items_q', text: 'select tenant_id from items where id >= $1', values: [1] })).rows);
      });
    });
    await withClient(tenant, async (c) => {
      const run = async (): Promise<void> => {
        const r = await c.query<{ tenant_id: string; pid: number }>({ name: 'items_q', text: 'select tenant_id, pg_backend_pid() as pid from items where id >= $1', values: [1] });
        expectOnlyOwn(tenant, r.rows);
        pids.add(r.rows[0].pid);
      };
      for (let i = 0; i < 40; i++) await run();
      // The pool hands out the connection given back last: a second client of the tenant in a
      // transaction holds the one the statement just ran on, so the next run needs another.
      await withClient(tenant, async (blocker) => {
        for (let i = 0; i < 20 && pids.size < 2; i++) {
          await blocker.query('begin');
          await blocker.query('select 1');
          await run();
          await blocker.query('commit');
        }
      });
    });
    await Promise.all(noise);
    expect(pids.size).toBeGreaterThan(1);
  });

  it('postgres.js (prepared by default) sees only its rows', async () => {
    const sql = postgres({ ...as(tenant), max: 2, onnotice: () => undefined });
    try {
      for (let i = 0; i < 10; i++) {
        const rows = await sql<{ tenant_id: string }[]>`select tenant_id from items where id >= ${1}`;
        expectOnlyOwn(tenant, [...rows]);
      }
    } finally {
      await sql.end();
    }
  });

  it('changes only its own rows', async () => {
    const before = await storedRows(other);
    await withClient(tenant, async (c) => {
      const own = (await c.query('select 1 from items')).rowCount;
      const updated = await c.query("update items set name = name || '+' where true");
      expect(updated.rowCount).toBe(own);
      await c.query("insert into items (tenant_id, id, name) values ($1, 900, 'new')", [tenant]);
      await c.query('delete from items where id = 900');
    });
    expect(await storedRows(other)).toEqual(before);
    const mine = await storedRows(tenant);
    expect(mine.every((r) => r.name.endsWith('+'))).toBe(true);
    expect(mine.some((r) => r.id === 900)).toBe(false);
  });

  it('COPY in and out with psql stays with the tenant', async () => {
    const env = { PGPASSWORD: APP_ROLE.password };
    const conn = ['-h', '127.0.0.1', '-p', String(proxy.port), '-U', `${APP_ROLE.user}@${tenant}`, '-d', APP_ROLE.database, '-v', 'ON_ERROR_STOP=1'];
    const rows = `${tenant}\t501\tcopied\n${tenant}\t502\tcopied\n`;
    if (ROW_TENANTS.includes(tenant)) {
      // Postgres refuses COPY FROM into a table under RLS, for everyone: fail closed. INSERT it is.
      const refused = await runPsql([...conn, '-c', 'COPY items (tenant_id, id, name) FROM STDIN'], { env, input: rows });
      expect(refused.stderr).toMatch(/COPY FROM not supported with row-level security/);
      const inserted = await runPsql([...conn, '-c', `insert into items values ('${tenant}', 501, 'copied'), ('${tenant}', 502, 'copied')`], { env });
      expect(inserted.code).toBe(0);
    } else {
      const load = await runPsql([...conn, '-c', 'COPY items (tenant_id, id, name) FROM STDIN'], { env, input: rows });
      expect(load.stderr).toBe('');
      expect(load.code).toBe(0);
    }
    const dump = await runPsql([...conn, '-c', 'COPY (select tenant_id, id from items order by id) TO STDOUT'], { env });
    expect(dump.code).toBe(0);
    const lines = dump.stdout.trim().split('\n');
    expect(lines.every((l) => l.startsWith(`${tenant}\t`))).toBe(true);
    expect(lines).toContain(`${tenant}\t501`);
    expect((await storedRows(tenant)).filter((r) => r.name === 'copied').map((r) => r.id)).toEqual([501, 502]);
    if (ROW_TENANTS.includes(tenant)) {
      // RLS WITH CHECK: a row for another tenant cannot be written.
      const sneak = await runPsql([...conn, '-c', `insert into items values ('${other}', 777, 'sneaky')`], { env });
      expect(sneak.code).not.toBe(0);
      expect(sneak.stderr).toMatch(/row-level security/);
      expect((await storedRows(other)).some((r) => r.id === 777)).toBe(false);
    }
  });
});

describe('8 tenants × 8 clients on a pool of 4', () => {
  it('never shows a client another tenant\'s row, in any protocol', async () => {
    const tenants = ALL_TENANTS.slice(0, 8);
    let checked = 0;
    const client = async (tenant: string, n: number): Promise<void> => {
      await withClient(tenant, async (c) => {
        for (let i = 0; i < 25; i++) {
          const kind = (i + n) % 3;
          const r =
            kind === 0
              ? await c.query<{ tenant_id: string; s: string }>("select tenant_id, current_setting('app.tenant_id') as s from items")
              : kind === 1
                ? await c.query<{ tenant_id: string; s: string }>("select tenant_id, current_setting('app.tenant_id') as s from items where id >= $1", [1])
                : await c.query<{ tenant_id: string; s: string }>({ name: 'mix', text: "select tenant_id, current_setting('app.tenant_id') as s from items where id >= $1", values: [1] });
          expectOnlyOwn(tenant, r.rows);
          for (const row of r.rows) expect(row.s).toBe(tenant);
          checked += r.rows.length;
        }
      });
    };
    await Promise.all(tenants.flatMap((t) => Array.from({ length: 8 }, (_, n) => client(t, n))));
    expect(checked).toBeGreaterThan(8 * 8 * 25 * SEED_ROWS - 1);
    const admin = await adminClient();
    try {
      const r = await admin.query<{ n: number }>('select count(*)::int as n from pg_stat_activity where datname = $1 and usename = $2', [layout.shared, APP_ROLE.user]);
      expect(r.rows[0].n).toBeLessThanOrEqual(4);
    } finally {
      await admin.end();
    }
  });
});
