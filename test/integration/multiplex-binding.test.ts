/**
 * A tenant binding that fails on a shared (pipelined) connection must never be taken as in
 * place. Run against PostgreSQL 15, which, unlike 18, does not report search_path: there nothing
 * else makes the next unit of that tenant send its binding again, and without it the unit would
 * run under the context of whichever tenant used the connection before.
 */
import pg from 'pg';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { configSchema } from '../../src/config/schema.js';
import { schemaSql } from '../../src/tenancy/setup-sql.js';
import type { Proxy } from '../../src/proxy/proxy.js';
import { startProxyWith } from '../harness/proxy.js';
import { startCluster, type Cluster } from '../harness/replication.js';

const LOGIN = { user: 'app', password: 'secret', database: 'app' };

let cluster: Cluster;
let proxy: Proxy;

beforeAll(async () => {
  cluster = await startCluster(0);
  const admin = new pg.Client({ host: '127.0.0.1', port: cluster.primary.port, user: 'postgres', database: 'postgres' });
  await admin.connect();
  await admin.query(`CREATE ROLE ${LOGIN.user} LOGIN PASSWORD '${LOGIN.password}'`);
  await admin.query(`CREATE DATABASE ${LOGIN.database}`);
  await admin.end();
  const db = new pg.Client({ host: '127.0.0.1', port: cluster.primary.port, user: 'postgres', database: LOGIN.database });
  await db.connect();
  // s1 is set up as `pgtenant sql schema` says; s9 is configured but its tenant role was never created.
  for (const t of ['s1', 's9']) await db.query(`CREATE SCHEMA tenant_${t}; CREATE TABLE tenant_${t}.items (id int PRIMARY KEY, name text); INSERT INTO tenant_${t}.items VALUES (1, '${t}-1')`);
  await db.query(schemaSql({ tenant: 's1', schema: 'tenant_{tenant}', loginRole: LOGIN.user, tenantRole: 'role_{tenant}' }));
  await db.end();
  proxy = await startProxyWith(configSchema.parse({
    listen: { host: '127.0.0.1', port: 0 },
    backends: { main: { host: '127.0.0.1', port: cluster.primary.port, user: LOGIN.user, password: LOGIN.password } },
    users: { [LOGIN.user]: { password: LOGIN.password } },
    pool: { mode: 'transaction', size: 2, queueTimeout: '10s', multiplex: true, sharedConnections: 1, shareBelow: '50ms' },
    tenancy: {
      placements: { schema: { database: LOGIN.database, schema: 'tenant_{tenant}', role: 'role_{tenant}' } },
      default: 'schema',
      tenants: { s1: { placement: 'schema' }, s9: { placement: 'schema' } },
    },
    log: { level: 'silent' },
  }));
}, 120_000);

afterAll(async () => {
  await proxy?.close();
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
