/**
 * CPU time spent, from /proc: the whole machine's (steal and idle excluded) and one process's.
 * Divided by the transactions of a run it gives CPU per transaction, which holds steady on a
 * machine whose throughput swings with CPU steal.
 */
import { readFileSync } from 'node:fs';

/** USER_HZ: /proc reports CPU time in these ticks (100 on Linux everywhere it runs here). */
const TICK_US = 10_000;

/** Machine-wide busy CPU time (user, nice, system, irq, softirq) in µs; undefined off Linux. */
export function machineBusyUs(): number | undefined {
  try {
    const line = readFileSync('/proc/stat', 'utf8').split('\n', 1)[0]!;
    const [user, nice, system, , , irq, softirq] = line.trim().split(/\s+/).slice(1).map(Number);
    return (user! + nice! + system! + irq! + softirq!) * TICK_US;
  } catch {
    return undefined;
  }
}

/** A process's user and system CPU time in µs; undefined when it cannot be read. */
export function processCpuUs(pid: number | undefined): { user: number; system: number } | undefined {
  if (pid === undefined) return undefined;
  try {
    const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
    // Fields after the parenthesised command name, which may itself hold spaces.
    const fields = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
    return { user: Number(fields[11]) * TICK_US, system: Number(fields[12]) * TICK_US };
  } catch {
    return undefined;
  }
}
