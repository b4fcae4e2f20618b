import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { Proxy } from '../../src/proxy/proxy.js';
import { runPgbench, runPsql } from '../harness/binaries.js';
import { APP_ROLE, adminClient, createDatabase, uniqueName } from '../harness/postgres.js';
import { startProxy } from '../harness/proxy.js';

describe('pgbench through the proxy (transaction mode, pool size 8)', () => {
  let proxy: Proxy;
  let db: string;
  let conn: string[];
  const env = { PGPASSWORD: APP_ROLE.password };

  beforeAll(async () => {
    db = await createDatabase(uniqueName('pgbench'), APP_ROLE.user);
    proxy = await startProxy({ pool: { mode: 'transaction', size: 8, queueTimeout: '10s' } });
    conn = ['-h', '127.0.0.1', '-p', String(proxy.port), '-U', APP_ROLE.user];
  });

  afterAll(async () => {
    await proxy?.close();
    if (db !== undefined) {
      const admin = await adminClient();
      try {
        await admin.query(`drop database if exists ${admin.escapeIdentifier(db)} with (force)`);
      } finally {
        await admin.end();
      }
    }
  });

  it('initializes with pgbench -i -s 1, then runs -S -c 32 -j 2 -T 10 in simple, extended and prepared mode', { timeout: 90_000 }, async () => {
    const init = await runPgbench(['-i', '-s', '1', ...conn, db], { env, timeoutMs: 60_000 });
    expect(init.code, init.stderr).toBe(0);
    const count = await runPsql(['-X', ...conn, db, '-At', '-c', 'select count(*) from pgbench_accounts'], { env });
    expect(count.code, count.stderr).toBe(0);
    expect(count.stdout).toBe('100000\n');

    for (const mode of ['simple', 'extended', 'prepared']) {
      const run = await runPgbench(['-S', '-c', '32', '-j', '2', '-T', '10', '-M', mode, ...conn, db], { env, timeoutMs: 25_000 });
      const output = `-M ${mode}\n${run.stdout}\n${run.stderr}`;
      expect(run.code, output).toBe(0);
      expect(run.stdout, output).toContain(`query mode: ${mode}`);
      expect(run.stdout, output).toMatch(/number of failed transactions: 0 \(0\.000%\)/);
      const processed = /number of transactions actually processed: (\d+)/.exec(run.stdout);
      expect(processed, output).not.toBeNull();
      expect(Number(processed![1]), output).toBeGreaterThan(0);
    }

    const pool = proxy.poolList.find((p) => p.key.includes(`/${db}/`));
    expect(pool).toBeDefined();
    expect(pool!.stats.total).toBeLessThanOrEqual(8);
    expect(pool!.stats.waiting).toBe(0);
  });

  it('runs -S -c 32 -M prepared through a row-placement tenant (binding and guard on) with 0 failures', { timeout: 60_000 }, async () => {
    const tenantProxy = await startProxy({
      pool: { mode: 'transaction', size: 8, queueTimeout: '10s' },
      tenancy: { placements: { row: { database: db } }, default: 'row', unknown: 'default' },
    });
    try {
      const run = await runPgbench(['-S', '-c', '32', '-j', '2', '-T', '5', '-M', 'prepared', '-h', '127.0.0.1', '-p', String(tenantProxy.port), '-U', `${APP_ROLE.user}@t1`, db], { env, timeoutMs: 25_000 });
      const output = `${run.stdout}\n${run.stderr}`;
      expect(run.code, output).toBe(0);
      expect(run.stdout, output).toMatch(/number of failed transactions: 0 \(0\.000%\)/);
      expect(tenantProxy.usage.tenants.get('t1')?.transactions ?? 0).toBeGreaterThan(1000);
      expect(tenantProxy.blockedStatements).toBe(0);
    } finally {
      await tenantProxy.close();
    }
  });
});
