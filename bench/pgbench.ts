/**
 * pgbench -S through pgtenant vs direct Postgres, same run, same server.
 *   npm run bench -- [--clients 32] [--seconds 10] [--modes simple,extended,prepared]
 * Targets: direct, proxy (transaction mode, no tenancy), tenant-row (binding + guard), tenant-row-noguard
 * (binding only). Prints a table and writes bench/results/pgbench-<time>.json.
 */
import { spawn } from 'node:child_process';
import { mkdirSync, mkdtempSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { parseArgs } from 'node:util';
import pg from 'pg';
import pino from 'pino';
import { startEmbeddedPostgres } from '../src/backend/embedded.js';
import { configSchema } from '../src/config/schema.js';
import { Proxy } from '../src/proxy/proxy.js';
import { freePort } from '../test/harness/ports.js';

const PGBIN = '/usr/lib/postgresql/15/bin';
const { values } = parseArgs({
  options: { clients: { type: 'string', default: '32' }, seconds: { type: 'string', default: '10' }, modes: { type: 'string', default: 'simple,extended,prepared' }, scale: { type: 'string', default: '2' }, pool: { type: 'string', default: '20' } },
});
const clients = Number(values.clients);
const seconds = Number(values.seconds);
const modes = values.modes!.split(',');

function pgbench(args: string[], env: Record<string, string>): Promise<{ tps: number; failed: number; out: string }> {
  return new Promise((resolve, reject) => {
    const child = spawn(path.join(PGBIN, 'pgbench'), args, { env: { ...process.env, ...env } });
    let out = '';
    child.stdout.on('data', (d: Buffer) => (out += d.toString()));
    child.stderr.on('data', (d: Buffer) => (out += d.toString()));
    child.on('error', reject);
    child.on('close', () => {
      const tps = /tps = ([\d.]+) \(without initial connection time\)/.exec(out);
      const failed = /number of failed transactions: (\d+)/.exec(out);
      resolve({ tps: tps ? Number(tps[1]) : 0, failed: failed ? Number(failed[1]) : -1, out });
    });
  });
}

async function main(): Promise<void> {
  const dataDir = mkdtempSync(path.join(os.tmpdir(), 'pgtenant-bench-'));
  const server = await startEmbeddedPostgres({ dataDir, port: await freePort(), user: 'postgres', password: 'postgres', persistent: false });
  const log = pino({ level: 'warn' });
  const proxies: Proxy[] = [];
  try {
    const admin = new pg.Client({ host: server.host, port: server.port, user: 'postgres', password: 'postgres', database: 'postgres' });
    await admin.connect();
    await admin.query("CREATE ROLE bench LOGIN PASSWORD 'bench'");
    await admin.query('CREATE DATABASE bench OWNER bench');
    await admin.end();
    const env = { PGPASSWORD: 'bench' };
    const init = await pgbench(['-i', '-q', '-s', values.scale!, '-h', server.host, '-p', String(server.port), '-U', 'bench', 'bench'], env);
    if (!/done in/.test(init.out)) throw new Error(`pgbench -i failed:\n${init.out}`);

    const base = {
      listen: { host: '127.0.0.1', port: 0 },
      backends: { main: { host: server.host, port: server.port } },
      users: { bench: { password: 'bench' } },
      pool: { mode: 'transaction', size: Number(values.pool), queueTimeout: '30s' },
      log: { level: 'warn' },
    };
    const tenancy = (guard: boolean) => ({ placements: { row: { database: 'bench' } }, default: 'row', unknown: 'default', guard });
    const plain = await Proxy.start(configSchema.parse(base), log);
    const tenant = await Proxy.start(configSchema.parse({ ...base, tenancy: tenancy(true) }), log);
    const noGuard = await Proxy.start(configSchema.parse({ ...base, tenancy: tenancy(false) }), log);
    proxies.push(plain, tenant, noGuard);

    const targets: { name: string; port: number; user: string }[] = [
      { name: 'direct', port: server.port, user: 'bench' },
      { name: 'proxy', port: plain.port, user: 'bench' },
      { name: 'tenant-row', port: tenant.port, user: 'bench@t1' },
      { name: 'tenant-row-noguard', port: noGuard.port, user: 'bench@t1' },
    ];

    const results: { target: string; mode: string; tps: number; failed: number }[] = [];
    for (const mode of modes) {
      for (const t of targets) {
        const r = await pgbench(['-S', '-M', mode, '-c', String(clients), '-j', '2', '-T', String(seconds), '-n', '-h', '127.0.0.1', '-p', String(t.port), '-U', t.user, 'bench'], env);
        results.push({ target: t.name, mode, tps: r.tps, failed: r.failed });
        console.log(`${mode.padEnd(9)} ${t.name.padEnd(19)} ${r.tps.toFixed(0).padStart(8)} tps  failed=${r.failed}`);
        if (r.tps === 0) console.log(r.out);
      }
    }
    console.log('\nratio to direct Postgres:');
    for (const mode of modes) {
      const direct = results.find((r) => r.mode === mode && r.target === 'direct')!.tps;
      for (const r of results.filter((x) => x.mode === mode && x.target !== 'direct')) console.log(`${mode.padEnd(9)} ${r.target.padEnd(19)} ${(r.tps / direct).toFixed(2)}`);
    }
    mkdirSync('bench/results', { recursive: true });
    const file = `bench/results/pgbench-${new Date().toISOString().replace(/[:.]/g, '-')}.json`;
    writeFileSync(file, JSON.stringify({ clients, seconds, scale: values.scale, pool: values.pool, cpus: os.cpus().length, results }, null, 2));
    console.log(`\nwritten to ${file}`);
  } finally {
    for (const p of proxies) await p.close();
    await server.stop();
  }
}

main().catch((err: unknown) => {
  console.error(err);
  process.exit(1);
});
