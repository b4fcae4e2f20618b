/**
 * A tenant binding left in place between units: only after units whose every statement the parser
 * says cannot change session state, only for the same tenant, and never after anything else ran.
 * One server connection, so every unit runs where the previous one did.
 */
import pg from 'pg';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { configSchema } from '../../src/config/schema.js';
import type { Pool } from '../../src/pool/pool.js';
import type { Proxy } from '../../src/proxy/proxy.js';
import { startProxyWith } from '../harness/proxy.js';
import { APP_ROLE, adminClient } from '../harness/postgres.js';
import { createTenantLayout, tenantConfigInput, type TenantLayout } from '../harness/tenants.js';

let layout: TenantLayout;
let proxy: Proxy;

const client = async (tenant: string): Promise<pg.Client> => {
  const c = new pg.Client({ host: '127.0.0.1', port: proxy.port, user: `${APP_ROLE.user}@${tenant}`, password: APP_ROLE.password, database: APP_ROLE.database });
  await c.connect();
  return c;
};
const sharedPool = (): Pool => proxy.poolList.find((p) => p.key.includes(layout.shared))!;
const kept = (): boolean => sharedPool().connections[0]!.bindingKept;
const tenantsSeen = async (c: pg.Client): Promise<string[]> => [...new Set((await c.query<{ tenant_id: string }>('select tenant_id from items where id >= 1')).rows.map((r) => r.tenant_id))];

beforeAll(async () => {
  layout = await createTenantLayout();
  const admin = await adminClient(layout.shared);
  // What a tenant could reach through any function it may call: the setting changed for the session.
  await admin.query("create function public.switch_tenant(t text) returns text language sql as $$ select set_config('app.tenant_id', t, false) $$");
  await admin.end();
  const input = tenantConfigInput(layout, { pool: { mode: 'transaction', size: 1, queueTimeout: '10s' } });
  proxy = await startProxyWith(configSchema.parse(input));
});

afterAll(async () => {
  await proxy?.close();
  await layout?.drop();
});

describe('binding kept between units', () => {
  it('is kept after plain reads and writes, and dropped after a statement that could change it', async () => {
    const r1 = await client('r1');
    expect(await tenantsSeen(r1)).toEqual(['r1']);
    expect(kept()).toBe(true);
    await r1.query('select tenant_id from items where id = $1', [1]);
    await r1.query({ name: 'upd', text: 'update items set name = name where id = $1', values: [1] });
    expect(kept()).toBe(true);

    expect((await r1.query("select switch_tenant('r2') as t")).rows[0].t).toBe('r2');
    expect(kept()).toBe(false);
    expect(await tenantsSeen(r1)).toEqual(['r1']);

    await r1.query('begin');
    await r1.query("select switch_tenant('r2')");
    await r1.query('commit');
    expect(kept()).toBe(false);
    expect(await tenantsSeen(r1)).toEqual(['r1']);

    await r1.query("select 1; select switch_tenant('r2')");
    expect(await tenantsSeen(r1)).toEqual(['r1']);
    await r1.end();
  });

  it('is kept after transactions of plain statements, savepoints and rollbacks included', async () => {
    const r1 = await client('r1');
    expect(await tenantsSeen(r1)).toEqual(['r1']);
    await r1.query('begin');
    await r1.query('update items set name = name where id = $1', [1]);
    await r1.query('commit');
    expect(kept()).toBe(true);
    await r1.query('begin');
    await r1.query('savepoint a');
    await r1.query('select tenant_id from items where id = $1', [2]);
    await r1.query('rollback to savepoint a');
    await r1.query('rollback');
    expect(kept()).toBe(true);
    // The kept binding is really there: the next transaction sees r1's rows, and only those.
    await r1.query('begin');
    expect(await tenantsSeen(r1)).toEqual(['r1']);
    await r1.query('commit');
    // A transaction that changes the setting still drops it.
    await r1.query('begin');
    await r1.query("select switch_tenant('r2')");
    await r1.query('rollback');
    expect(kept()).toBe(false);
    expect(await tenantsSeen(r1)).toEqual(['r1']);
    await r1.end();
  });

  it('another tenant on the same connection always gets its own binding', async () => {
    const r1 = await client('r1');
    const r2 = await client('r2');
    for (let i = 0; i < 5; i++) {
      expect(await tenantsSeen(r1)).toEqual(['r1']);
      expect(await tenantsSeen(r2)).toEqual(['r2']);
    }
    expect(await tenantsSeen(r1)).toEqual(['r1']);
    // r2 leaves r1's setting behind, then r1 comes back: r1's binding is not "in place".
    await r2.query("select switch_tenant('r1')");
    expect(await tenantsSeen(r2)).toEqual(['r2']);
    expect(await tenantsSeen(r1)).toEqual(['r1']);
    await r1.end();
    await r2.end();
  });
});

describe('settings a tenant changes on the server connection', () => {
  const show = async (c: pg.Client, name: string): Promise<string> => (await c.query(`select current_setting('${name}') as v`)).rows[0].v as string;

  it('do not reach another tenant\'s client on that connection: SET, set_config, SET inside a transaction', async () => {
    const r1 = await client('r1');
    const r2 = await client('r2');
    const r2WithOwn = new pg.Client({ host: '127.0.0.1', port: proxy.port, user: `${APP_ROLE.user}@r2`, password: APP_ROLE.password, database: APP_ROLE.database, options: '-c work_mem=2345kB' });
    await r2WithOwn.connect();
    try {
      const defaults = { timeout: await show(r2, 'statement_timeout'), workMem: await show(r2, 'work_mem'), lockTimeout: await show(r2, 'lock_timeout') };
      await r1.query("set statement_timeout = '1234ms'");
      await r1.query("set work_mem = '1234kB'");
      expect(await show(r2, 'statement_timeout')).toBe(defaults.timeout);
      expect(await show(r2, 'work_mem')).toBe(defaults.workMem);
      await r1.query("select set_config('lock_timeout', '4321ms', false)");
      expect(await show(r2, 'lock_timeout')).toBe(defaults.lockTimeout);
      await r1.query('begin');
      await r1.query("set work_mem = '1111kB'");
      await r1.query('commit');
      expect(await show(r2WithOwn, 'work_mem')).toBe('2345kB');
      // The tenant binding came back with the reset: r2 still sees its rows, and only those.
      expect(await tenantsSeen(r2)).toEqual(['r2']);
      // Within one tenant, as with any pooler, a SET stays on the connection it ran on.
      const r1Again = await client('r1');
      await r1.query("set work_mem = '1234kB'");
      expect(await show(r1Again, 'work_mem')).toBe('1234kB');
      await r1Again.end();
    } finally {
      await r1.end();
      await r2.end();
      await r2WithOwn.end();
    }
  });
});
