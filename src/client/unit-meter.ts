import type { ShapeStats, UnitClassifier } from '../sql/classify.js';
import type { ClientSession } from './session.js';

/** What a unit is counted against: the client's usage, rows it received, its backend's latency. */
export type MeteredClient = Pick<ClientSession, 'usage' | 'rowsReceived' | 'backendLatency'>;

/** Counts a finished unit of work in the client's usage and its backend's latency. */
export function countUnit(session: MeteredClient, seconds: number, rows: number, backendName: string): void {
  const u = session.usage;
  u.transactions++;
  u.busySeconds += seconds;
  u.latency.observe(seconds);
  u.rows += rows;
  session.backendLatency(backendName).observe(seconds);
}

/**
 * Times the unit of work (a transaction, or autocommit statements up to ReadyForQuery 'I') running
 * on the client's own server connection, and counts it when it ends.
 */
export class UnitMeter {
  /** performance.now() when the running unit started; 0: none running. */
  private startedAt = 0;
  private rowsAtStart = 0;
  /** Shape of the unit, when it was classified before it went out: its time teaches the classifier. */
  shape: ShapeStats | null = null;

  constructor(
    private readonly session: MeteredClient,
    private readonly classifier: UnitClassifier | null,
  ) {}

  get running(): boolean {
    return this.startedAt !== 0;
  }

  start(): void {
    this.startedAt = performance.now();
    this.rowsAtStart = this.session.rowsReceived;
  }

  /** Time the running unit has taken so far, ms (0 when none runs). */
  elapsed(): number {
    return this.startedAt === 0 ? 0 : performance.now() - this.startedAt;
  }

  /** The running unit ended on a server of `backendName`: counted, and its time (ms) returned. */
  end(backendName: string): number {
    const ms = performance.now() - this.startedAt;
    this.startedAt = 0;
    if (this.shape !== null) {
      this.classifier?.record(this.shape, ms);
      this.shape = null;
    }
    countUnit(this.session, ms / 1000, this.session.rowsReceived - this.rowsAtStart, backendName);
    return ms;
  }
}
