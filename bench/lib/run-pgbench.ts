/**
 * One pgbench run and its numbers: TPS from pgbench's summary, mean and p99 latency from the
 * per-transaction log (-l), failures and aborted clients as pgbench reports them.
 */
import { mkdtempSync, readdirSync, readFileSync, rmSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { PGBIN } from './postgres.js';
import { run } from './procs.js';
import { machineBusyUs, processCpuUs } from './cpu.js';

export interface Cell {
  name: string;
  /** pgbench arguments besides -c/-j/-T/connection. */
  args: string[];
  clients: number;
  /** Read-write script: truncate history and vacuum before each run, as pgbench does without -n. */
  vacuum?: boolean;
}

export const CELLS: Cell[] = [
  { name: 'S-c1', args: ['-S'], clients: 1 },
  { name: 'S-c8', args: ['-S'], clients: 8 },
  { name: 'S-c32', args: ['-S'], clients: 32 },
  { name: 'S-c128', args: ['-S'], clients: 128 },
  { name: 'extended-c16', args: ['-S', '-M', 'extended'], clients: 16 },
  { name: 'prepared-c16', args: ['-S', '-M', 'prepared'], clients: 16 },
  { name: 'tpcb-c16', args: [], clients: 16, vacuum: true },
  { name: 'S-C-c8', args: ['-S', '-C'], clients: 8 },
];

export interface RunResult {
  tps: number;
  /** Transactions in the per-transaction log that completed (not failed). */
  txns: number;
  meanMs: number;
  p99Ms: number;
  /** "number of failed transactions" (serialization/deadlock retries exhausted; -1 if not printed). */
  failed: number;
  /** Clients that pgbench aborted on an error (e.g. "prepared statement does not exist"). */
  aborted: number;
  /** pgbench exited non-zero ("Run was aborted; the above results are incomplete"): its TPS covers only the time until then. */
  runAborted: boolean;
  /** Machine-wide busy CPU (pgbench, Postgres and the proxy together, steal excluded) per completed transaction, µs. */
  cpuUsPerTx?: number;
  /** The proxy process's own CPU per completed transaction, µs. */
  proxyUsPerTx?: number;
  /** The user-space part of proxyUsPerTx (the rest is the kernel's, mostly socket I/O). */
  proxyUserUsPerTx?: number;
  /** -C: pgbench's "average connection time". */
  connMs?: number;
  exitCode: number | null;
  /** First error line pgbench printed, if any. */
  error?: string;
  /** Last lines of pgbench's output when it exited non-zero. */
  tail?: string;
}

export interface RunTarget {
  port: number;
  user: string;
  /** The proxy's process id, to measure its CPU time (none for direct Postgres). */
  pid?: number;
}

export async function runPgbench(cell: Cell, target: RunTarget, o: { seconds: number; database: string; password: string }): Promise<RunResult> {
  const logDir = mkdtempSync(path.join(os.tmpdir(), 'pgtenant-bench-log-'));
  try {
    const args = [
      ...cell.args,
      '-c', String(cell.clients),
      '-j', String(Math.min(2, cell.clients)),
      '-T', String(o.seconds),
      '-n',
      '-l', '--log-prefix', path.join(logDir, 'tx'),
      '-h', '127.0.0.1', '-p', String(target.port), '-U', target.user, o.database,
    ];
    const machineBefore = machineBusyUs();
    const proxyBefore = processCpuUs(target.pid);
    const res = await run(path.join(PGBIN, 'pgbench'), args, { env: { ...process.env, PGPASSWORD: o.password }, cwd: logDir });
    const machineAfter = machineBusyUs();
    const proxyAfter = processCpuUs(target.pid);
    const out = res.out;
    const num = (re: RegExp, dflt: number): number => {
      const m = re.exec(out);
      return m ? Number(m[1]) : dflt;
    };
    const { count, meanMs, p99Ms } = latencies(logDir);
    const perTx = (before: number | undefined, after: number | undefined): number | undefined =>
      before === undefined || after === undefined || count === 0 ? undefined : (after - before) / count;
    const cpuUsPerTx = perTx(machineBefore, machineAfter);
    const proxyUsPerTx = perTx(proxyBefore && proxyBefore.user + proxyBefore.system, proxyAfter && proxyAfter.user + proxyAfter.system);
    const proxyUserUsPerTx = perTx(proxyBefore?.user, proxyAfter?.user);
    const error = out.split('\n').find((l) => /error|aborted|FATAL/i.test(l) && !/number of failed/.test(l));
    return {
      tps: num(/^tps = ([\d.]+) /m, 0),
      txns: count,
      meanMs,
      p99Ms,
      ...(cpuUsPerTx !== undefined && { cpuUsPerTx }),
      ...(proxyUsPerTx !== undefined && { proxyUsPerTx }),
      ...(proxyUserUsPerTx !== undefined && { proxyUserUsPerTx }),
      failed: num(/number of failed transactions: (\d+)/, -1),
      aborted: out.split('\n').filter((l) => /client \d+ aborted/.test(l)).length,
      ...(/average connection time/.test(out) && { connMs: num(/average connection time = ([\d.]+) ms/, NaN) }),
      runAborted: res.code !== 0,
      exitCode: res.code,
      ...(error !== undefined && { error: error.trim().slice(0, 300) }),
      ...(res.code !== 0 && { tail: out.trim().split('\n').slice(-12).join('\n') }),
    };
  } finally {
    rmSync(logDir, { recursive: true, force: true });
  }
}

/**
 * pgbench -l lines: `client_id transaction_no time script_no time_epoch time_us [...]`, `time` being
 * the transaction's latency in µs ("failed"/"skipped" for those). One file per thread.
 */
function latencies(logDir: string): { count: number; meanMs: number; p99Ms: number } {
  const values: number[] = [];
  for (const f of readdirSync(logDir)) {
    if (!f.startsWith('tx.')) continue;
    const text = readFileSync(path.join(logDir, f), 'utf8');
    let start = 0;
    while (start < text.length) {
      let end = text.indexOf('\n', start);
      if (end < 0) end = text.length;
      const s1 = text.indexOf(' ', start);
      const s2 = s1 < 0 ? -1 : text.indexOf(' ', s1 + 1);
      const s3 = s2 < 0 ? -1 : text.indexOf(' ', s2 + 1);
      if (s3 > 0 && s3 < end) {
        const us = Number(text.slice(s2 + 1, s3));
        if (Number.isFinite(us)) values.push(us);
      }
      start = end + 1;
    }
  }
  if (values.length === 0) return { count: 0, meanMs: NaN, p99Ms: NaN };
  const sorted = Float64Array.from(values).sort();
  let sum = 0;
  for (const v of sorted) sum += v;
  const p99 = sorted[Math.max(0, Math.ceil(0.99 * sorted.length) - 1)]!;
  return { count: sorted.length, meanMs: sum / sorted.length / 1000, p99Ms: p99 / 1000 };
}
