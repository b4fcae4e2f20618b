/**
 * What metrics cost (issue 5): /metrics scrape time with many tenants known, and pgbench through
 * pgtenant with the admin port off vs on while /metrics is scraped, same run, interleaved.
 *   npm run bench:metrics -- [--seconds 10] [--runs 3] [--scale 10] [--pool 20] [--tenants 1000] [--scrape-every 1000]
 * Both pgtenant targets: row-placement tenancy, binding and guard on. Before the runs, --tenants
 * distinct tenants each connect and run one query through the metrics-on target, so its usage
 * registry and label bounding (admin.metricsTopTenants, default 50) work on a realistic population.
 */
import { parseArgs } from 'node:util';
import os from 'node:os';
import pg from 'pg';
import { positiveIntegers } from './lib/options.js';
import { startPgtenant } from './lib/pgtenant.js';
import { median } from './lib/report.js';
import { startBenchPostgres } from './lib/postgres.js';
import { cleanupAll, installExitHandlers, stopping } from './lib/procs.js';
import { CELLS, runPgbench, type RunResult } from './lib/run-pgbench.js';

const { values } = parseArgs({
  options: {
    seconds: { type: 'string', default: '10' },
    runs: { type: 'string', default: '3' },
    scale: { type: 'string', default: '10' },
    pool: { type: 'string', default: '20' },
    tenants: { type: 'string', default: '1000' },
    'scrape-every': { type: 'string', default: '1000' },
  },
});
const { seconds, runs, scale, pool: poolSize, tenants: tenantCount, 'scrape-every': scrapeEveryMs } = positiveIntegers(values);

const DB = 'bench';
const USER = 'bench';
const PASSWORD = 'bench';

const percentile = (xs: number[], p: number): number => {
  const s = [...xs].sort((a, b) => a - b);
  return s.length === 0 ? NaN : s[Math.max(0, Math.ceil(p * s.length) - 1)]!;
};

/** One GET /metrics: milliseconds until the whole body arrived, and its size. */
async function scrape(port: number): Promise<{ ms: number; bytes: number }> {
  const t0 = performance.now();
  const res = await fetch(`http://127.0.0.1:${port}/metrics`);
  const body = await res.text();
  if (res.status !== 200) throw new Error(`/metrics answered ${res.status}`);
  return { ms: performance.now() - t0, bytes: Buffer.byteLength(body) };
}

/** Scrapes every `everyMs` until stopped; what it measured. */
function scrapeLoop(port: number, everyMs: number): { stop(): Promise<number[]> } {
  const times: number[] = [];
  let running = true;
  const loop = (async () => {
    while (running) {
      const started = performance.now();
      times.push((await scrape(port)).ms);
      await new Promise((r) => setTimeout(r, Math.max(0, everyMs - (performance.now() - started))));
    }
  })();
  return {
    stop: async () => {
      running = false;
      await loop;
      return times;
    },
  };
}

async function populateTenants(port: number, n: number): Promise<void> {
  const batch = 20;
  for (let i = 0; i < n; i += batch) {
    await Promise.all(
      Array.from({ length: Math.min(batch, n - i) }, async (_, j) => {
        const c = new pg.Client({ host: '127.0.0.1', port, user: `${USER}@tenant${i + j}`, password: PASSWORD, database: DB });
        await c.connect();
        await c.query('select count(*) from pgbench_branches');
        await c.end();
      }),
    );
  }
}

async function main(): Promise<void> {
  installExitHandlers();
  const server = await startBenchPostgres({ scale, user: USER, password: PASSWORD, database: DB, unixSocket: false });
  const common = { backendHost: '127.0.0.1', backendPort: server.port, database: DB, user: USER, password: PASSWORD, poolSize, tenancy: { guard: true } };
  const off = await startPgtenant({ ...common, name: 'metrics-off' });
  const on = await startPgtenant({ ...common, name: 'metrics-on', admin: true });
  const adminPort = on.adminPort!;

  const idleBefore: number[] = [];
  for (let i = 0; i < 20; i++) idleBefore.push((await scrape(adminPort)).ms);
  console.log(`${tenantCount} tenants connect once each through metrics-on…`);
  await populateTenants(on.port, tenantCount);
  const idle: { ms: number; bytes: number }[] = [];
  for (let i = 0; i < 50; i++) idle.push(await scrape(adminPort));

  const cells = CELLS.filter((c) => c.name === 'S-c32' || c.name === 'prepared-c16');
  const opts = { seconds, database: DB, password: PASSWORD };
  const targets = [
    { name: 'metrics-off', port: off.port, user: `${USER}@t1` },
    { name: 'metrics-on', port: on.port, user: `${USER}@t1` },
  ];
  for (const t of targets) await runPgbench({ name: 'warmup', args: ['-S'], clients: 8 }, t, { ...opts, seconds: 2 });

  const results = new Map<string, RunResult[]>();
  const underLoad: number[] = [];
  for (const cell of cells) {
    for (let r = 0; r < runs; r++) {
      const order = r % 2 === 0 ? targets : [...targets].reverse();
      for (const t of order) {
        const scraper = t.name === 'metrics-on' ? scrapeLoop(adminPort, scrapeEveryMs) : undefined;
        const result = await runPgbench(cell, t, opts);
        if (scraper) underLoad.push(...(await scraper.stop()));
        if (stopping()) throw new Error('interrupted');
        const key = `${cell.name} ${t.name}`;
        results.set(key, [...(results.get(key) ?? []), result]);
        const bad = result.failed > 0 || result.aborted > 0 || result.runAborted ? `  FAILED ${result.error ?? ''}` : '';
        console.log(`${cell.name.padEnd(13)} ${t.name.padEnd(12)} run ${r + 1}: ${result.tps.toFixed(0).padStart(7)} tps  mean ${result.meanMs.toFixed(3)} ms${bad}`);
      }
    }
  }

  console.log(`\npgbench ${seconds} s × ${runs} runs (medians), scale ${scale}, pool ${poolSize}, ${os.cpus().length} CPUs, Postgres ${server.version}, node ${process.version}`);
  console.log(`metrics-on: admin port, /metrics scraped every ${scrapeEveryMs} ms during its runs, ${tenantCount} + 1 tenants known\n`);
  console.log('| cell | metrics off tps | metrics on tps | on/off |');
  console.log('|---|---:|---:|---:|');
  for (const cell of cells) {
    const offTps = median((results.get(`${cell.name} metrics-off`) ?? []).map((r) => r.tps));
    const onTps = median((results.get(`${cell.name} metrics-on`) ?? []).map((r) => r.tps));
    console.log(`| ${cell.name} | ${offTps.toFixed(0)} | ${onTps.toFixed(0)} | ${(onTps / offTps).toFixed(3)} |`);
  }
  const fmt = (xs: number[]): string => `median ${median(xs).toFixed(2)} ms, p99 ${percentile(xs, 0.99).toFixed(2)} ms, max ${Math.max(...xs).toFixed(2)} ms (n=${xs.length})`;
  console.log(`\n/metrics scrape, idle, 1 tenant: ${fmt(idleBefore)}`);
  console.log(`/metrics scrape, idle, ${tenantCount + 1} tenants: ${fmt(idle.map((s) => s.ms))}, ${(idle[0]!.bytes / 1024).toFixed(1)} KiB`);
  console.log(`/metrics scrape under pgbench load: ${fmt(underLoad)}`);
}

main()
  .then(() => cleanupAll())
  .catch(async (err: unknown) => {
    console.error(err);
    await cleanupAll();
    process.exitCode = 1;
  });
