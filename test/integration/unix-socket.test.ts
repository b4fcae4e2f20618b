/**
 * A backend `host` that starts with '/' is the directory of the server's Unix-domain socket, as in
 * libpq and PgBouncer: statements and cancel requests go through the socket.
 */
import { mkdtemp } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import pg from 'pg';
import postgres from 'postgres';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startEmbeddedPostgres, type EmbeddedPostgresServer } from '../../src/backend/embedded.js';
import { configSchema } from '../../src/config/schema.js';
import type { Proxy } from '../../src/proxy/proxy.js';
import { freePort } from '../harness/ports.js';
import { startProxyWith, testConfigInput } from '../harness/proxy.js';

let server: EmbeddedPostgresServer;
let proxy: Proxy;

beforeAll(async () => {
  const dataDir = await mkdtemp(path.join(os.tmpdir(), 'pgtenant-socket-'));
  server = await startEmbeddedPostgres({ dataDir, port: await freePort(), user: 'postgres', password: 'pw', persistent: false, unixSocket: true });
  proxy = await startProxyWith(
    configSchema.parse(
      testConfigInput({
        backends: { main: { host: server.socketDir, port: server.port } },
        users: { postgres: { password: 'pw' } },
        pool: { mode: 'transaction', size: 2, queueTimeout: '5s' },
      }),
    ),
  );
}, 60_000);

afterAll(async () => {
  await proxy?.close();
  await server?.stop();
});

describe('Unix-domain socket backends', () => {
  it('connects through the socket: the server sees no client address', async () => {
    const client = new pg.Client({ host: '127.0.0.1', port: proxy.port, user: 'postgres', password: 'pw', database: 'postgres' });
    await client.connect();
    try {
      const { rows } = await client.query<{ addr: string | null; one: number }>('select inet_client_addr() as addr, 1 as one');
      expect(rows).toEqual([{ addr: null, one: 1 }]);
      // The same server over TCP does report one: the null above is the socket's doing.
      const direct = new pg.Client({ host: server.host, port: server.port, user: 'postgres', password: 'pw', database: 'postgres' });
      await direct.connect();
      const viaTcp = await direct.query<{ addr: string | null }>('select host(inet_client_addr()) as addr');
      await direct.end();
      expect(viaTcp.rows).toEqual([{ addr: '127.0.0.1' }]);
    } finally {
      await client.end();
    }
  });

  it('forwards a cancel request through the socket', async () => {
    const sql = postgres({ host: '127.0.0.1', port: proxy.port, user: 'postgres', password: 'pw', database: 'postgres', max: 1 });
    try {
      const started = Date.now();
      const q = sql`select pg_sleep(20)`;
      setTimeout(() => q.cancel(), 300);
      await expect(q).rejects.toMatchObject({ code: '57014' });
      expect(Date.now() - started).toBeLessThan(5000);
      expect(await sql`select 2 as two`).toEqual([{ two: 2 }]);
    } finally {
      await sql.end();
    }
  });

  it('refuses a TLS mode the socket cannot give', () => {
    const parsed = configSchema.safeParse(testConfigInput({ backends: { main: { host: '/var/run/postgresql', port: 5432, tls: { mode: 'require' } } } }));
    expect(parsed.success).toBe(false);
    expect(parsed.error?.issues[0]?.message).toMatch(/cannot be met over the Unix-domain socket in \/var\/run\/postgresql/);
    expect(configSchema.safeParse(testConfigInput({ backends: { main: { host: '/var/run/postgresql', port: 5432, tls: { mode: 'prefer' } } } })).success).toBe(true);
  });
});
