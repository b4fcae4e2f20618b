/**
 * pgbench matrix through PgBouncer and pgtenant vs direct Postgres, same run, same server (issue 4).
 *   npm run bench -- [--seconds 10] [--runs 3] [--scale 10] [--pool 20] [--only S-c32,prepared-c16]
 *                    [--targets direct,pgbouncer,pgtenant-mux] [--backend tcp|unix]
 * Cells: -S at c=1/8/32/128, -S -M extended and -S -M prepared at c=16, tpcb-like at c=16, -S -C at c=8.
 * Targets: direct; pgbouncer (transaction mode, default_pool_size = --pool; installed with apt-get when
 * missing); pgtenant (row-placement tenant bench@t1, binding and guard on); pgtenant-mux (the same with
 * pool.multiplex); pgtenant-plain (no tenancy); node-pipe (a bare Node.js TCP pipe, no pooling: the
 * floor for a proxy on Node.js). --backend unix: the proxies reach Postgres through its Unix-domain
 * socket (pgbench still connects to every target over TCP), as when they run on the database host.
 * pgtenant runs in child processes. Targets are interleaved within each cell, each cell is repeated
 * --runs times and medians are reported. Writes bench/results/bench-<time>.json and .svg.
 */
import { execFileSync } from 'node:child_process';
import { mkdirSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { parseArgs } from 'node:util';
import { ensurePgbouncer, startPgbouncer } from './lib/pgbouncer.js';
import { positiveIntegers } from './lib/options.js';
import { startPgtenant } from './lib/pgtenant.js';
import { startNodePipe } from './lib/node-pipe.js';
import { startBenchPostgres } from './lib/postgres.js';
import { cleanupAll, installExitHandlers, run, stopping } from './lib/procs.js';
import { markdownTable, summarize, svgChart, type Sample } from './lib/report.js';
import { CELLS, runPgbench, type RunTarget } from './lib/run-pgbench.js';

const { values } = parseArgs({
  options: {
    seconds: { type: 'string', default: '10' },
    runs: { type: 'string', default: '3' },
    scale: { type: 'string', default: '10' },
    pool: { type: 'string', default: '20' },
    only: { type: 'string' },
    targets: { type: 'string' },
    backend: { type: 'string', default: 'tcp' },
  },
});
const { seconds, runs, scale, pool: poolSize } = positiveIntegers({ seconds: values.seconds, runs: values.runs, scale: values.scale, pool: values.pool });
const only = values.only?.split(',').map((s) => s.trim()).filter((s) => s !== '');
const unknownCells = (only ?? []).filter((n) => !CELLS.some((c) => c.name === n));
if (unknownCells.length > 0) throw new Error(`unknown cell(s) ${unknownCells.join(', ')}; known: ${CELLS.map((c) => c.name).join(', ')}`);
const cells = only ? CELLS.filter((c) => only.includes(c.name)) : CELLS;
const TARGET_NAMES = ['direct', 'pgbouncer', 'pgtenant', 'pgtenant-mux', 'pgtenant-plain', 'node-pipe'];
const wanted = values.targets?.split(',').map((s) => s.trim()).filter((s) => s !== '') ?? TARGET_NAMES;
const unknownTargets = wanted.filter((n) => !TARGET_NAMES.includes(n));
if (unknownTargets.length > 0) throw new Error(`unknown target(s) ${unknownTargets.join(', ')}; known: ${TARGET_NAMES.join(', ')}`);

if (values.backend !== 'tcp' && values.backend !== 'unix') throw new Error('--backend must be tcp or unix');
const unixSocket = values.backend === 'unix';

const DB = 'bench';
const USER = 'bench';
const PASSWORD = 'bench';

interface Target extends RunTarget {
  name: string;
}

function gitCommit(): string | undefined {
  try {
    const sha = execFileSync('git', ['rev-parse', '--short', 'HEAD'], { encoding: 'utf8', stdio: 'pipe' }).trim();
    const dirty = execFileSync('git', ['status', '--porcelain', 'src'], { encoding: 'utf8', stdio: 'pipe' }).trim() !== '';
    return dirty ? `${sha} (src/ modified)` : sha;
  } catch {
    return undefined;
  }
}

async function main(): Promise<void> {
  installExitHandlers();
  const started = new Date();
  const pgtenantVersion = gitCommit(); // the pgtenant children load src/ as it is now
  const bouncerBin = await ensurePgbouncer();
  const bouncerNote = 'unavailable' in bouncerBin ? `pgbouncer: NOT BENCHMARKED — ${bouncerBin.unavailable}` : `pgbouncer: ${bouncerBin.version}`;
  if ('unavailable' in bouncerBin) console.log(`${bouncerNote}; continuing without it`);

  const server = await startBenchPostgres({ scale, user: USER, password: PASSWORD, database: DB, unixSocket });
  const backendHost = server.socketDir ?? '127.0.0.1';
  const targets: Target[] = [];
  if (wanted.includes('direct')) targets.push({ name: 'direct', port: server.port, user: USER });
  let bouncerConfig: string | undefined;
  if (!('unavailable' in bouncerBin) && wanted.includes('pgbouncer')) {
    const b = await startPgbouncer({ bin: bouncerBin.bin, backendHost, backendPort: server.port, database: DB, user: USER, password: PASSWORD, poolSize });
    bouncerConfig = b.config;
    targets.push({ name: 'pgbouncer', port: b.port, pid: b.pid, user: USER });
  }
  const common = { backendHost, backendPort: server.port, database: DB, user: USER, password: PASSWORD, poolSize };
  const pgtenantConfigs: Record<string, unknown> = {};
  const pgtenants = [
    { name: 'pgtenant', user: `${USER}@t1`, tenancy: { guard: true } },
    { name: 'pgtenant-mux', user: `${USER}@t1`, tenancy: { guard: true }, multiplex: true },
    { name: 'pgtenant-plain', user: USER },
  ];
  for (const { user, ...o } of pgtenants.filter((p) => wanted.includes(p.name))) {
    const proc = await startPgtenant({ ...common, ...o });
    pgtenantConfigs[o.name] = proc.config;
    targets.push({ name: o.name, port: proc.port, pid: proc.pid, user });
  }

  if (wanted.includes('node-pipe')) {
    const pipe = await startNodePipe(server.port, server.socketDir);
    targets.push({ name: 'node-pipe', port: pipe.port, pid: pipe.pid, user: USER });
  }

  const opts = { seconds, database: DB, password: PASSWORD };
  console.log(`warm-up: 2 s of -S -c 8 per target (${targets.map((t) => t.name).join(', ')})`);
  for (const t of targets) {
    const r = await runPgbench({ name: 'warmup', args: ['-S'], clients: 8 }, t, { ...opts, seconds: 2 });
    if (r.tps === 0) throw new Error(`warm-up through ${t.name} failed: ${r.error ?? `exit ${r.exitCode}`}`);
  }

  const total = cells.length * targets.length * runs;
  console.log(`\n${cells.length} cells × ${targets.length} targets × ${runs} runs × ${seconds} s ≈ ${Math.ceil((total * (seconds + 1)) / 60)} min\n`);
  const samples: Sample[] = [];
  let n = 0;
  for (const cell of cells) {
    for (let r = 0; r < runs; r++) {
      // Rotate the order each run so no target always goes first (or right after the vacuum).
      const order = targets.map((_, i) => targets[(i + r) % targets.length]!);
      for (const t of order) {
        if (cell.vacuum) await server.sql('VACUUM pgbench_branches', 'VACUUM pgbench_tellers', 'TRUNCATE pgbench_history');
        const result = await runPgbench(cell, t, opts);
        if (stopping()) throw new Error('interrupted');
        samples.push({ cell: cell.name, target: t.name, run: r + 1, result });
        const extra =
          result.runAborted || result.aborted > 0 || result.failed > 0
            ? `  ${result.runAborted ? `RUN ABORTED (exit ${result.exitCode}) ` : ''}clients aborted=${result.aborted} failed=${result.failed} ${result.error ?? ''}`
            : '';
        console.log(
          `[${String(++n).padStart(3)}/${total}] ${cell.name.padEnd(13)} ${t.name.padEnd(15)} run ${r + 1}: ` +
            `${result.tps.toFixed(0).padStart(7)} tps  mean ${result.meanMs.toFixed(3)} ms  p99 ${result.p99Ms.toFixed(3)} ms${extra}`,
        );
      }
    }
  }

  const names = targets.map((t) => t.name);
  const summary = summarize(samples, cells.map((c) => c.name), names);
  const header = `pgbench ${seconds} s × ${runs} runs (medians), scale ${scale}, pool ${poolSize}, proxies to Postgres over ${unixSocket ? 'its Unix-domain socket' : 'TCP'}, ${os.cpus().length} CPUs; Postgres ${server.version}; ${bouncerNote}; node ${process.version}`;
  console.log(`\n${header}\n`);
  console.log(markdownTable(summary));
  const be = summary.find((s) => s.cell === 'extended-c16' && s.target === 'pgbouncer');
  console.log('');
  for (const name of ['pgtenant', 'pgtenant-mux']) {
    const tp = summary.find((s) => s.cell === 'prepared-c16' && s.target === name);
    if (tp && be && be.tps > 0) console.log(`${name} -M prepared vs pgbouncer -M extended (c=16): ${tp.tps.toFixed(0)} / ${be.tps.toFixed(0)} = ${(tp.tps / be.tps).toFixed(2)}`);
  }

  const dir = path.join(import.meta.dirname, 'results');
  mkdirSync(dir, { recursive: true });
  const stamp = started.toISOString().replace(/[:.]/g, '-');
  const base = path.join(dir, `bench-${stamp}`);
  const meta = {
    started: started.toISOString(),
    finished: new Date().toISOString(),
    command: `npm run bench -- ${process.argv.slice(2).join(' ')}`.trim(),
    options: { seconds, runs, scale, pool: poolSize, backend: values.backend, cells: cells.map((c) => c.name) },
    machine: { cpus: os.cpus().length, cpuModel: os.cpus()[0]?.model, node: process.version },
    versions: { postgres: server.version, pgbench: (await run(path.join('/usr/lib/postgresql/15/bin', 'pgbench'), ['--version'])).out.trim(), pgbouncer: bouncerNote, pgtenant: pgtenantVersion },
    targets: targets.map((t) => ({ name: t.name, user: t.user })),
    pgtenantConfigs,
    pgbouncerConfig: bouncerConfig,
    cells,
  };
  writeFileSync(`${base}.json`, JSON.stringify({ ...meta, summary, samples }, null, 2));
  writeFileSync(`${base}.svg`, svgChart(summary, cells.map((c) => c.name), names, header));
  console.log(`\nwritten ${path.relative(process.cwd(), base)}.json and .svg`);
}

main()
  .then(() => cleanupAll())
  .catch(async (err: unknown) => {
    console.error(err);
    await cleanupAll();
    process.exitCode = 1;
  });
