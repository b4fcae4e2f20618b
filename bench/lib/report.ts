/** Medians per (cell, target), the results table (Markdown), and an SVG bar chart. */
import type { RunResult } from './run-pgbench.js';

export interface Sample {
  cell: string;
  target: string;
  run: number;
  result: RunResult;
}

export interface Summary {
  cell: string;
  target: string;
  runs: number;
  tps: number;
  meanMs: number;
  p99Ms: number;
  connMs?: number;
  /** Machine-wide busy CPU per transaction, µs (median). */
  cpuUsPerTx?: number;
  /** The proxy process's CPU per transaction, µs (median). */
  proxyUsPerTx?: number;
  /** Its user-space part, µs (median). */
  proxyUserUsPerTx?: number;
  failed: number;
  aborted: number;
  /** Runs where pgbench exited non-zero (its TPS then covers only the time until the abort). */
  abortedRuns: number;
  /** Completed transactions per run (median), from the per-transaction log. */
  txns: number;
  vsDirect?: number;
  vsPgbouncer?: number;
  errors: string[];
}

export function median(xs: number[]): number {
  const s = xs.filter((x) => !Number.isNaN(x)).sort((a, b) => a - b);
  if (s.length === 0) return NaN;
  const m = Math.floor(s.length / 2);
  return s.length % 2 === 1 ? s[m]! : (s[m - 1]! + s[m]!) / 2;
}

/** pgbench aborted the run or some clients: the numbers are not a throughput measurement. */
export const broken = (s: Summary): boolean => s.abortedRuns > 0 || s.aborted > 0;

export function summarize(samples: Sample[], cells: string[], targets: string[]): Summary[] {
  const out: Summary[] = [];
  for (const cell of cells) {
    const row: Summary[] = [];
    for (const target of targets) {
      const rs = samples.filter((s) => s.cell === cell && s.target === target).map((s) => s.result);
      if (rs.length === 0) continue;
      const known = (xs: (number | undefined)[]): number[] => xs.filter((x): x is number => x !== undefined);
      const conn = known(rs.map((r) => r.connMs));
      const cpu = known(rs.map((r) => r.cpuUsPerTx));
      const proxyCpu = known(rs.map((r) => r.proxyUsPerTx));
      const proxyUser = known(rs.map((r) => r.proxyUserUsPerTx));
      row.push({
        cell,
        target,
        runs: rs.length,
        tps: median(rs.map((r) => r.tps)),
        meanMs: median(rs.map((r) => r.meanMs)),
        p99Ms: median(rs.map((r) => r.p99Ms)),
        ...(conn.length > 0 && { connMs: median(conn) }),
        ...(cpu.length > 0 && { cpuUsPerTx: median(cpu) }),
        ...(proxyCpu.length > 0 && { proxyUsPerTx: median(proxyCpu) }),
        ...(proxyUser.length > 0 && { proxyUserUsPerTx: median(proxyUser) }),
        failed: rs.reduce((a, r) => a + Math.max(0, r.failed), 0),
        aborted: rs.reduce((a, r) => a + r.aborted, 0),
        abortedRuns: rs.filter((r) => r.runAborted).length,
        txns: median(rs.map((r) => r.txns)),
        errors: [...new Set(rs.map((r) => r.error).filter((e): e is string => e !== undefined))],
      });
    }
    const base = (name: string): number | undefined => {
      const s = row.find((r) => r.target === name);
      return s !== undefined && s.tps > 0 && !broken(s) ? s.tps : undefined;
    };
    const direct = base('direct');
    const bouncer = base('pgbouncer');
    for (const s of row) {
      if (broken(s)) continue;
      if (direct !== undefined) s.vsDirect = s.tps / direct;
      if (bouncer !== undefined) s.vsPgbouncer = s.tps / bouncer;
    }
    out.push(...row);
  }
  return out;
}

const fmt = (x: number | undefined, digits: number): string => (x === undefined || Number.isNaN(x) ? '—' : x.toFixed(digits));

export function markdownTable(rows: Summary[]): string {
  const lines = [
    '| cell | target | median TPS | mean ms | p99 ms | × direct | × pgbouncer | CPU µs/tx | proxy µs/tx | proxy user µs/tx | notes |',
    '|---|---|--:|--:|--:|--:|--:|--:|--:|--:|---|',
  ];
  for (const r of rows) {
    const notes: string[] = [];
    if (r.connMs !== undefined) notes.push(`avg connect ${r.connMs.toFixed(2)} ms`);
    if (r.abortedRuns > 0) notes.push(`pgbench aborted ${r.abortedRuns}/${r.runs} runs (median ${r.txns} txns done; pgbench's partial TPS ${r.tps.toFixed(0)} not shown)`);
    if (r.aborted > 0) notes.push(`${r.aborted} clients aborted`);
    if (r.failed > 0) notes.push(`${r.failed} failed txns`);
    if (r.errors.length > 0 && (broken(r) || r.failed > 0)) notes.push(`\`${r.errors[0]!.replace(/\|/g, '\\|').slice(0, 120)}\``);
    lines.push(`| ${r.cell} | ${r.target} | ${broken(r) ? 'FAILED' : fmt(r.tps, 0)} | ${broken(r) ? '—' : fmt(r.meanMs, 3)} | ${broken(r) ? '—' : fmt(r.p99Ms, 3)} | ${fmt(r.vsDirect, 2)} | ${fmt(r.vsPgbouncer, 2)} | ${fmt(r.cpuUsPerTx, 0)} | ${fmt(r.proxyUsPerTx, 0)} | ${fmt(r.proxyUserUsPerTx, 0)} | ${notes.join('; ')} |`);
  }
  return lines.join('\n');
}

const COLORS: Record<string, string> = { direct: '#4c78a8', pgbouncer: '#f58518', pgtenant: '#54a24b', 'pgtenant-mux': '#72b7b2', 'pgtenant-plain': '#b279a2', 'node-pipe': '#9d755d' };
const esc = (s: string): string => s.replace(/&/g, '&amp;').replace(/</g, '&lt;').replace(/>/g, '&gt;');

/** Small multiples: one panel per cell (own TPS scale), one bar per target, TPS and p99 as labels. */
export function svgChart(rows: Summary[], cells: string[], targets: string[], title: string): string {
  const cols = Math.min(3, cells.length);
  const pw = 320;
  const ph = 230;
  const top = 88;
  const width = cols * pw + 20;
  const height = top + Math.ceil(cells.length / cols) * ph + 10;
  const parts: string[] = [
    `<svg xmlns="http://www.w3.org/2000/svg" width="${width}" height="${height}" viewBox="0 0 ${width} ${height}" font-family="sans-serif" font-size="11">`,
    `<rect width="100%" height="100%" fill="#fff"/>`,
    `<text x="10" y="20" font-size="14" font-weight="bold">pgbench through PgBouncer and pgtenant vs direct Postgres</text>`,
    `<text x="10" y="38" fill="#333">${esc(title)}</text>`,
  ];
  targets.forEach((t, i) => {
    const x = 10 + i * 150;
    parts.push(`<rect x="${x}" y="50" width="12" height="12" fill="${COLORS[t] ?? '#888'}"/><text x="${x + 16}" y="60">${esc(t)}</text>`);
  });
  parts.push(`<text x="10" y="80" fill="#555">median TPS above each bar, median p99 latency (ms) below it; red FAILED = pgbench aborted (see JSON)</text>`);
  cells.forEach((cell, ci) => {
    const x0 = 10 + (ci % cols) * pw;
    const y0 = top + Math.floor(ci / cols) * ph;
    const cellRows = targets.map((t) => rows.find((r) => r.cell === cell && r.target === t));
    const max = Math.max(1, ...cellRows.map((r) => (r && !broken(r) ? r.tps : 0))) * 1.15;
    const chartH = ph - 70;
    const baseY = y0 + 25 + chartH;
    parts.push(`<text x="${x0 + pw / 2 - 10}" y="${y0 + 16}" text-anchor="middle" font-weight="bold">${esc(cell)}</text>`);
    parts.push(`<line x1="${x0 + 10}" y1="${baseY}" x2="${x0 + pw - 30}" y2="${baseY}" stroke="#333"/>`);
    const bw = (pw - 60) / targets.length;
    cellRows.forEach((r, ti) => {
      const bx = x0 + 15 + ti * bw;
      if (r === undefined) {
        parts.push(`<text x="${bx + bw / 2 - 4}" y="${baseY - 4}" text-anchor="middle" fill="#999">n/a</text>`);
        return;
      }
      const bad = broken(r) || r.failed > 0;
      const h = broken(r) ? 0 : (r.tps / max) * chartH;
      parts.push(`<rect x="${bx}" y="${baseY - h}" width="${bw - 8}" height="${h}" fill="${COLORS[r.target] ?? '#888'}"${bad ? ' fill-opacity="0.45" stroke="#d62728" stroke-dasharray="3,2"' : ''}/>`);
      parts.push(`<text x="${bx + (bw - 8) / 2}" y="${baseY - h - 4}" text-anchor="middle"${bad ? ' fill="#d62728"' : ''}>${broken(r) ? 'FAILED' : fmt(r.tps, 0)}</text>`);
      parts.push(`<text x="${bx + (bw - 8) / 2}" y="${baseY + 14}" text-anchor="middle" fill="#555">${broken(r) ? '' : fmt(r.p99Ms, 2)}</text>`);
    });
  });
  parts.push('</svg>');
  return parts.join('\n') + '\n';
}
