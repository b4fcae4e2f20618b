/**
 * A real streaming-replication cluster for read-routing tests: a PostgreSQL 15 primary (initdb)
 * and hot standbys made with pg_basebackup -R, each on a random port in one temp dir, run as the
 * `postgres` OS user when the tests run as root. A replica can be stopped and started again.
 */
import { execFile, execFileSync } from 'node:child_process';
import { appendFileSync, chownSync, mkdtempSync, rmSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import pg from 'pg';
import { freePort } from './ports.js';

const PGBIN = '/usr/lib/postgresql/15/bin';

export interface Server {
  port: number;
  dataDir: string;
  stop(mode?: 'fast' | 'immediate'): Promise<void>;
  start(): Promise<void>;
}

export interface Cluster {
  primary: Server;
  replicas: Server[];
  /** Waits until every running replica has replayed everything the primary wrote so far. */
  caughtUp(): Promise<void>;
  stop(): Promise<void>;
}

function osUser(): { uid: number; gid: number } | undefined {
  if (process.getuid?.() !== 0) return undefined;
  const id = (flag: string): number => Number(execFileSync('id', [flag, 'postgres'], { encoding: 'utf8' }));
  return { uid: id('-u'), gid: id('-g') };
}

function run(ids: ReturnType<typeof osUser>, bin: string, args: string[]): Promise<void> {
  return new Promise((resolve, reject) => {
    execFile(path.join(PGBIN, bin), args, { ...ids, env: { ...process.env, LC_ALL: 'C' }, timeout: 60_000 }, (err, stdout, stderr) => {
      if (err) reject(new Error(`${bin} ${args.join(' ')} failed: ${err.message}\n${stdout}${stderr}`));
      else resolve();
    });
  });
}

async function query(port: number, sql: string): Promise<pg.QueryResult> {
  const c = new pg.Client({ host: '127.0.0.1', port, user: 'postgres', database: 'postgres' });
  await c.connect();
  try {
    return await c.query(sql);
  } finally {
    await c.end();
  }
}

/** `settings`: more postgresql.conf lines for every server. */
export async function startCluster(replicaCount: number, settings: string[] = []): Promise<Cluster> {
  const ids = osUser();
  const root = mkdtempSync(path.join(os.tmpdir(), 'pgtenant-repl-'));
  if (ids) chownSync(root, ids.uid, ids.gid);
  const server = (name: string, port: number): Server => {
    const dataDir = path.join(root, name);
    const log = path.join(root, `${name}.log`);
    return {
      port,
      dataDir,
      start: () => run(ids, 'pg_ctl', ['-D', dataDir, '-l', log, '-w', '-t', '60', 'start']),
      stop: (mode = 'fast') => run(ids, 'pg_ctl', ['-D', dataDir, '-m', mode, '-w', 'stop']),
    };
  };
  const started: Server[] = [];
  try {
    const primary = server('primary', await freePort());
    await run(ids, 'initdb', ['-D', primary.dataDir, '-U', 'postgres', '--auth=trust', '-E', 'UTF8', '--no-sync']);
    appendFileSync(
      path.join(primary.dataDir, 'postgresql.conf'),
      [`port = ${primary.port}`, "listen_addresses = '127.0.0.1'", `unix_socket_directories = '${root}'`, 'fsync = off', 'wal_level = replica', 'max_wal_senders = 10', 'hot_standby = on', 'shared_buffers = 32MB', ...settings, ''].join('\n'),
    );
    await primary.start();
    started.push(primary);
    const replicas: Server[] = [];
    for (let i = 1; i <= replicaCount; i++) {
      const replica = server(`replica${i}`, await freePort());
      await run(ids, 'pg_basebackup', ['-h', '127.0.0.1', '-p', String(primary.port), '-U', 'postgres', '-D', replica.dataDir, '-R', '-X', 'stream', '-c', 'fast', '--no-sync']);
      appendFileSync(path.join(replica.dataDir, 'postgresql.auto.conf'), `port = ${replica.port}\n`);
      await replica.start();
      started.push(replica);
      replicas.push(replica);
    }
    const caughtUp = async (): Promise<void> => {
      const target = (await query(primary.port, 'select pg_current_wal_lsn() as lsn')).rows[0].lsn as string;
      for (const r of replicas) {
        for (let attempt = 0; ; attempt++) {
          try {
            const { rows } = await query(r.port, `select pg_last_wal_replay_lsn() >= '${target}'::pg_lsn as done`);
            if (rows[0].done === true) break;
          } catch (err) {
            if (attempt > 300) throw err;
          }
          if (attempt > 300) throw new Error(`replica on ${r.port} did not catch up with ${target}`);
          await new Promise((res) => setTimeout(res, 100));
        }
      }
    };
    return {
      primary,
      replicas,
      caughtUp,
      stop: async () => {
        for (const s of [...replicas, primary]) await s.stop('immediate').catch(() => undefined);
        rmSync(root, { recursive: true, force: true });
      },
    };
  } catch (err) {
    for (const s of started) await s.stop('immediate').catch(() => undefined);
    rmSync(root, { recursive: true, force: true });
    throw err;
  }
}
