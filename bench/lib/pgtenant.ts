/**
 * pgtenant in its own process (`node dist/cli.js start --config <tmp yaml>`, the built code users
 * run; `npm run bench` builds it first), so its event loop is not shared with the benchmark driver.
 */
import { existsSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { stringify } from 'yaml';
import { freePort, onCleanup, spawnTracked, stopChild, waitForPort, untilListening } from './procs.js';

export interface PgtenantOptions {
  name: string;
  /** 127.0.0.1, or the directory of the server's Unix-domain socket. */
  backendHost: string;
  backendPort: number;
  database: string;
  user: string;
  password: string;
  poolSize: number;
  /** Row-placement tenancy on `database`, binding on; guard on or off. Undefined: no tenancy section. */
  tenancy?: { guard: boolean };
  /** pool.multiplex: fast autocommit statements pipelined on shared server connections. */
  multiplex?: boolean;
  /** Admin HTTP port (/metrics) on a free port. */
  admin?: boolean;
}

export interface RunningPgtenant {
  port: number;
  /** Process id (for CPU accounting). */
  pid: number | undefined;
  /** Set when `admin` was asked for. */
  adminPort?: number;
  config: Record<string, unknown>;
  stop(): Promise<void>;
}

const ROOT = path.resolve(import.meta.dirname, '../..');
const CLI = path.join(ROOT, 'dist/cli.js');

/** Extra node flags for pgtenant, e.g. `PGTENANT_BENCH_NODE_ARGS=--cpu-prof` or `--perf-basic-prof` to profile it under load. */
const nodeArgs = (): string[] => process.env.PGTENANT_BENCH_NODE_ARGS?.split(' ').filter((a) => a !== '') ?? [];

export async function startPgtenant(o: PgtenantOptions): Promise<RunningPgtenant> {
  if (!existsSync(CLI)) throw new Error(`${CLI} is missing: run \`npm run build\` first (npm run bench does)`);
  const dir = mkdtempSync(path.join(os.tmpdir(), `pgtenant-bench-${o.name}-`));
  onCleanup(`${o.name} temp dir`, async () => rmSync(dir, { recursive: true, force: true }));
  const port = await freePort();
  const config: Record<string, unknown> = {
    listen: { host: '127.0.0.1', port },
    backends: { main: { host: o.backendHost, port: o.backendPort } },
    users: { [o.user]: { password: o.password } },
    pool: { mode: 'transaction', size: o.poolSize, queueTimeout: '30s', shutdownTimeout: '1s' },
    log: { level: 'warn' },
  };
  const adminPort = o.admin === true ? await freePort() : undefined;
  if (adminPort !== undefined) config.admin = { port: adminPort };
  if (o.multiplex === true) config.pool = { ...(config.pool as object), multiplex: true };
  if (o.tenancy !== undefined) {
    config.tenancy = { placements: { row: { database: o.database } }, default: 'row', unknown: 'default', guard: o.tenancy.guard };
  }
  const file = path.join(dir, 'pgtenant.yaml');
  writeFileSync(file, stringify(config));
  const child = spawnTracked(process.execPath, [...nodeArgs(), CLI, 'start', '--config', file], {
    cwd: ROOT,
    env: { ...process.env, NODE_ENV: 'production' },
  });
  await untilListening(child, port, `pgtenant (${o.name})`);
  if (adminPort !== undefined) await waitForPort(adminPort, `pgtenant admin (${o.name})`, child);
  return { port, pid: child.pid, ...(adminPort !== undefined && { adminPort }), config, stop: () => stopChild(child) };
}
