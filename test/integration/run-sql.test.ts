/**
 * runSql, which replica health checks use: a server that does not answer in time fails the call,
 * and the connection is closed then, not left open until the server answers.
 */
import { describe, expect, it } from 'vitest';
import { runSql } from '../../src/pool/run-sql.js';
import type { ServerEndpoint } from '../../src/pool/server-connection.js';
import { adminClient, backend, uniqueName } from '../harness/postgres.js';

const endpoint = (): ServerEndpoint => ({ ...backend(), database: 'postgres', tls: { mode: 'disable' }, connectTimeout: 5000 });

describe('runSql', () => {
  it('returns rows as text', async () => {
    expect(await runSql(endpoint(), "select 1, null, 'x'")).toEqual([['1', null, 'x']]);
  });

  it('gives up after timeoutMs and closes the connection', async () => {
    const marker = uniqueName('probe');
    const t0 = performance.now();
    await expect(runSql(endpoint(), `select pg_sleep(0.6), '${marker}'`, 150)).rejects.toThrow(/no answer within 150 ms/);
    expect(performance.now() - t0).toBeLessThan(500);
    // Once pg_sleep ends the server writes to a closed socket and its backend exits; a connection
    // left open would show as an idle backend whose last query was the probe.
    const admin = await adminClient();
    try {
      const count = async (): Promise<number> =>
        Number((await admin.query<{ n: string }>('select count(*) as n from pg_stat_activity where query like $1 and pid <> pg_backend_pid()', [`%${marker}%`])).rows[0].n);
      const deadline = Date.now() + 5000;
      while ((await count()) > 0 && Date.now() < deadline) await new Promise((r) => setTimeout(r, 100));
      expect(await count()).toBe(0);
    } finally {
      await admin.end();
    }
  });
});
