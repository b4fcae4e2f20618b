import type { TenantRow, UsageReport } from './report.js';

const COLUMNS: (keyof TenantRow)[] = ['tenant', 'placement', 'clients', 'transactions', 'queries', 'errors', 'blocked', 'busySeconds', 'rows', 'bytes', 'tps', 'p50Ms', 'p99Ms'];

const round = (v: unknown): string => (typeof v === 'number' && !Number.isInteger(v) ? v.toFixed(3) : String(v));

/** `pgtenant report`: per-tenant usage from a running proxy's admin port, as a table or CSV. */
export async function usageReportCommand(adminUrl: string, since: string | undefined, csv: boolean): Promise<string> {
  const url = `${adminUrl}/tenants${since === undefined ? '' : `?since=${encodeURIComponent(since)}`}`;
  let res: Response;
  try {
    res = await fetch(url);
  } catch (err) {
    throw new Error(`cannot reach pgtenant's admin port at ${adminUrl} (is it running with admin.port set?): ${(err as Error).message}`);
  }
  if (!res.ok) throw new Error(`${url}: ${res.status} ${(await res.text()).trim()}`);
  const report = (await res.json()) as UsageReport;
  const rows = report.tenants.map((t) => COLUMNS.map((c) => round(t[c])));
  if (csv) {
    const quote = (s: string): string => (/[",\n]/.test(s) ? `"${s.replace(/"/g, '""')}"` : s);
    return [COLUMNS.join(','), ...rows.map((r) => r.map(quote).join(','))].join('\n') + '\n';
  }
  const widths = COLUMNS.map((c, i) => Math.max(c.length, ...rows.map((r) => r[i].length)));
  const line = (cells: string[]): string => cells.map((cell, i) => (i < 2 ? cell.padEnd(widths[i]) : cell.padStart(widths[i]))).join('  ');
  return [`usage from ${report.from} to ${report.time}`, line(COLUMNS as string[]), ...rows.map(line)].join('\n') + '\n';
}
