import { spawnSync } from 'node:child_process';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import pg from 'pg';
import { describe, expect, it } from 'vitest';
import { startEmbeddedPostgres } from '../../src/backend/embedded.js';
import { runPgbench, runPsql } from '../harness/binaries.js';
import { freePort } from '../harness/ports.js';
import { APP_ROLE, adminClient, backend, createDatabase, uniqueName } from '../harness/postgres.js';

describe('test harness', () => {
  it('connects as the superuser', async () => {
    const client = await adminClient();
    try {
      const { rows } = await client.query<{ one: number; su: boolean }>(
        `select 1 as one, rolsuper as su from pg_roles where rolname = current_user`,
      );
      expect(rows).toEqual([{ one: 1, su: true }]);
    } finally {
      await client.end();
    }
  });

  it('connects as the non-superuser app role to its database', async () => {
    const { host, port } = backend();
    const client = new pg.Client({ host, port, ...APP_ROLE });
    await client.connect();
    try {
      const { rows } = await client.query<{ one: number; su: boolean; db: string }>(
        `select 1 as one, rolsuper as su, current_database() as db from pg_roles where rolname = current_user`,
      );
      expect(rows).toEqual([{ one: 1, su: false, db: 'app' }]);
    } finally {
      await client.end();
    }
  });

  it('runs psql against the embedded server', async () => {
    const { port } = backend();
    const result = await runPsql(
      ['-X', '-h', '127.0.0.1', '-p', String(port), '-U', APP_ROLE.user, APP_ROLE.database, '-At', '-c', 'select 41+1'],
      { env: { PGPASSWORD: APP_ROLE.password } },
    );
    expect(result).toMatchObject({ code: 0, stdout: '42\n' });
  });

  it('runs pgbench -i on a fresh database', async () => {
    const { port } = backend();
    const db = await createDatabase(uniqueName('bench'), APP_ROLE.user);
    const args = ['-h', '127.0.0.1', '-p', String(port), '-U', APP_ROLE.user];
    const env = { PGPASSWORD: APP_ROLE.password };
    const init = await runPgbench(['-i', '-s', '1', ...args, db], { env, timeoutMs: 60_000 });
    expect(init.code, init.stderr).toBe(0);
    const count = await runPsql(['-X', ...args, db, '-At', '-c', 'select count(*) from pgbench_accounts'], { env });
    expect(count.stdout).toBe('100000\n');

    const client = await adminClient();
    try {
      await client.query(`drop database ${client.escapeIdentifier(db)} with (force)`);
    } finally {
      await client.end();
    }
  });

  it('kills a command that outlives its timeout', async () => {
    const { host, port, user, password } = backend();
    const result = await runPsql(['-X', '-h', host, '-p', String(port), '-U', user, 'postgres', '-c', 'select pg_sleep(30)'], {
      env: { PGPASSWORD: password },
      timeoutMs: 500,
    });
    expect(result.code).toBeNull();
    expect(result.stderr).toContain('timeout');
  });
});

describe('startEmbeddedPostgres', () => {
  it('reuses a persistent data dir and clears a stale postmaster.pid', async () => {
    const dataDir = await mkdtemp(path.join(os.tmpdir(), 'pgtenant-embedded-'));
    const options = { dataDir, user: 'postgres', password: 'pw', persistent: true };
    try {
      const first = await startEmbeddedPostgres({ ...options, port: await freePort() });
      const client = new pg.Client({ ...first, database: 'postgres' });
      await client.connect();
      await client.query('create table kept (v int); insert into kept values (7)');
      await client.end();
      await first.stop();

      // Simulate a killed server: a pid file naming a process that has exited.
      const deadPid = spawnSync(process.execPath, ['-e', '']).pid;
      await writeFile(path.join(dataDir, 'postmaster.pid'), `${deadPid}\n${dataDir}\n`);

      const logs: string[] = [];
      const second = await startEmbeddedPostgres({ ...options, port: await freePort(), onLog: (l) => logs.push(l) });
      try {
        expect(logs.some((l) => l.includes('removed stale'))).toBe(true);
        const again = new pg.Client({ ...second, database: 'postgres' });
        await again.connect();
        const { rows } = await again.query('select v from kept');
        await again.end();
        expect(rows).toEqual([{ v: 7 }]);
      } finally {
        await second.stop();
      }
    } finally {
      await rm(dataDir, { recursive: true, force: true });
    }
  });

  it.runIf(process.getuid?.() === 0)('refuses a data dir the postgres user cannot reach', async () => {
    const parent = await mkdtemp(path.join(os.tmpdir(), 'pgtenant-embedded-')); // mode 0700, owned by root
    try {
      const start = startEmbeddedPostgres({ dataDir: path.join(parent, 'data'), port: 1, user: 'postgres', password: 'pw', persistent: false });
      await expect(start).rejects.toThrow(`${parent} (mode 700`);
    } finally {
      await rm(parent, { recursive: true, force: true });
    }
  });

  it('fails with the log tail when the server cannot start', async () => {
    const dataDir = await mkdtemp(path.join(os.tmpdir(), 'pgtenant-embedded-'));
    // The shared server already listens on this port.
    const start = startEmbeddedPostgres({ dataDir, port: backend().port, user: 'postgres', password: 'pw', persistent: false });
    await expect(start).rejects.toThrow(/exited during startup[\s\S]*could not bind/);
    await rm(dataDir, { recursive: true, force: true });
  });
});
