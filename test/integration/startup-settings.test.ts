/**
 * Settings a client asks for at startup (`options=-c name=value`, or startup parameters): Postgres
 * refuses a login whose settings it cannot apply, and so does pgtenant, with the server's error.
 * A setting that a server refuses later (after the login checked it) closes the client and that
 * server connection rather than letting the client's statements run without it.
 */
import pg from 'pg';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { Proxy } from '../../src/proxy/proxy.js';
import { APP_ROLE, adminClient, backend, uniqueName } from '../harness/postgres.js';
import { startProxy, viaProxy } from '../harness/proxy.js';
import { slowLink } from '../harness/slow-link.js';

let proxy: Proxy;

beforeAll(async () => {
  proxy = await startProxy({ pool: { mode: 'transaction', size: 1, queueTimeout: '5s' } });
});

afterAll(async () => {
  await proxy?.close();
});

/** Logs in with `options` and runs `sql`: its rows, or the error code of the login or the query. */
async function runWith(options: string, sql: string, target: Proxy | 'direct' = proxy): Promise<{ rows?: Record<string, unknown>[]; code?: string; message?: string }> {
  const pg0 = backend();
  const login = target !== 'direct' ? viaProxy(target) : { host: pg0.host, port: pg0.port, user: APP_ROLE.user, password: APP_ROLE.password, database: APP_ROLE.database };
  const client = new pg.Client({ ...login, options });
  client.on('error', () => undefined);
  try {
    await client.connect();
    return { rows: (await client.query(sql)).rows };
  } catch (err) {
    const e = err as { code?: string; message?: string };
    return { code: e.code, message: e.message };
  } finally {
    await client.end().catch(() => undefined);
  }
}

describe('startup settings', () => {
  it('refuses a login with a value the server refuses, with the server\'s error, as Postgres does', async () => {
    const direct = await runWith('-c statement_timeout=abc', 'select 1', 'direct');
    expect(direct.code).toBe('22023');
    const proxied = await runWith('-c statement_timeout=abc', 'select 1');
    expect(proxied).toEqual({ code: '22023', message: direct.message });
  });

  it('refuses a login with an unknown setting (42704) and one the user may not set (42501)', async () => {
    expect((await runWith('-c no_such_setting=1', 'select 1')).code).toBe('42704');
    const direct = await runWith('-c log_statement=all', 'select 1', 'direct');
    expect(direct.code).toBe('42501');
    expect((await runWith('-c log_statement=all', 'select 1')).code).toBe('42501');
  });

  it('applies an accepted setting, at every login that asks for it, and leaves nothing on the server connection', async () => {
    for (let i = 0; i < 3; i++) expect((await runWith('-c statement_timeout=1234', 'show statement_timeout')).rows).toEqual([{ statement_timeout: '1234ms' }]);
    expect((await runWith('', 'show statement_timeout')).rows).toEqual([{ statement_timeout: '0' }]);
  });

  it('checks a setting with the server once per distinct value, not at every login', async () => {
    // Every connection pgtenant opens to the server goes through the link and is counted there.
    const link = await slowLink(backend().port, 0);
    const counted = await startProxy({ backends: { main: { host: '127.0.0.1', port: link.port } }, pool: { mode: 'transaction', size: 1, queueTimeout: '5s' } });
    try {
      const workMem = async (options: string) => (await runWith(options, 'show work_mem', counted)).rows;
      expect(await workMem('')).toEqual([{ work_mem: '4MB' }]);
      const pooled = link.connections;
      expect(await workMem('-c work_mem=3MB')).toEqual([{ work_mem: '3MB' }]);
      expect(link.connections).toBe(pooled + 1);
      expect(await workMem('-c work_mem=3MB')).toEqual([{ work_mem: '3MB' }]);
      expect(await workMem('-c work_mem=3MB')).toEqual([{ work_mem: '3MB' }]);
      expect(link.connections).toBe(pooled + 1);
      expect(await workMem('-c work_mem=5MB')).toEqual([{ work_mem: '5MB' }]);
      expect(link.connections).toBe(pooled + 2);
    } finally {
      await counted.close();
      await link.close();
    }
  });

  it('closes a client whose setting the server refuses after its login, and replaces that server connection', async () => {
    const config = `public.${uniqueName('tscfg')}`;
    const admin = await adminClient(APP_ROLE.database);
    try {
      await admin.query(`CREATE TEXT SEARCH CONFIGURATION ${config} (COPY = pg_catalog.simple)`);
      const client = new pg.Client({ ...viaProxy(proxy), options: `-c default_text_search_config=${config}` });
      client.on('error', () => undefined);
      await client.connect();
      const before = (await client.query('select pg_backend_pid() as pid, current_setting(\'default_text_search_config\') as cfg')).rows[0] as { pid: number; cfg: string };
      expect(before.cfg).toBe(config);
      // The pool's one connection now has the setting: a client without it sets it back...
      expect((await runWith('', 'show default_text_search_config')).rows).toEqual([{ default_text_search_config: 'pg_catalog.english' }]);
      // ...and when the first client comes back, its setting no longer exists.
      await admin.query(`DROP TEXT SEARCH CONFIGURATION ${config}`);
      const failed = await client.query('select 1').then(() => 'ran', (e: { code?: string; message?: string }) => e);
      expect(failed).toMatchObject({ code: '22023', message: expect.stringContaining('could not apply the client\'s settings') });
      await client.end().catch(() => undefined);
      const after = await runWith('', 'select pg_backend_pid() as pid, current_setting(\'default_text_search_config\') as cfg');
      expect(after.rows).toHaveLength(1);
      expect(after.rows![0]).toMatchObject({ cfg: 'pg_catalog.english' });
      expect(after.rows![0].pid).not.toBe(before.pid);
    } finally {
      await admin.query(`DROP TEXT SEARCH CONFIGURATION IF EXISTS ${config}`);
      await admin.end();
    }
  });
});
