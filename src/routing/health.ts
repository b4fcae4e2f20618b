/**
 * Health checks of a backend's replicas, every readRouting.healthInterval: a fresh connection to
 * each (so a stopped replica shows at once), its recovery state and replay position, compared with
 * the primary's WAL position for the byte lag. Each interval also ends an outlier-ejection window.
 */
import type { Logger } from 'pino';
import { runSql } from '../pool/run-sql.js';
import type { ServerEndpoint } from '../pool/server-connection.js';
import type { ReplicaSet } from './replicas.js';

const REPLICA_SQL =
  'select pg_is_in_recovery(), pg_last_wal_replay_lsn(), ' +
  'coalesce(extract(epoch from now() - pg_last_xact_replay_timestamp()), 0)';

/** An LSN like 0/3000148 as a number of bytes (exact below 2^53, decades of WAL). */
export function lsnBytes(lsn: string): number {
  const slash = lsn.indexOf('/');
  if (slash <= 0) throw new Error(`not an LSN: ${lsn}`);
  return Number.parseInt(lsn.slice(0, slash), 16) * 2 ** 32 + Number.parseInt(lsn.slice(slash + 1), 16);
}

export class ReplicaHealth {
  private timer: NodeJS.Timeout | null = null;
  private running = false;
  /** Login the checks use: the first pool's on this backend (pgtenant keeps no credentials of its own). */
  private endpoint: ServerEndpoint | null = null;

  constructor(
    private readonly set: ReplicaSet,
    private readonly log: Logger,
  ) {}

  /** Starts checking with the login of `primary` (the first call wins). */
  useEndpoint(primary: ServerEndpoint): void {
    if (this.endpoint !== null) return;
    this.endpoint = primary;
    void this.tick();
  }

  /** One round of checks, then the next is scheduled. */
  private async tick(): Promise<void> {
    if (this.running || this.endpoint === null) return;
    this.running = true;
    try {
      await this.checkAll(this.endpoint);
    } finally {
      this.running = false;
    }
    if (this.endpoint !== null) {
      this.timer = setTimeout(() => void this.tick(), this.set.config.healthInterval);
      this.timer.unref();
    }
  }

  private async checkAll(primary: ServerEndpoint): Promise<void> {
    // A check may take longer than the interval (the next one waits): a busy replica is not a dead
    // one. One that answers nothing within connectTimeout is, and its connection is closed.
    const timeoutMs = primary.connectTimeout;
    let primaryLsn: number | null = null;
    try {
      const rows = await runSql(primary, 'select pg_current_wal_lsn()', timeoutMs);
      primaryLsn = lsnBytes(rows[0]?.[0] ?? '');
    } catch (err) {
      this.log.debug({ backend: this.set.backend, err: (err as Error).message }, 'primary WAL position unavailable; replica lag not checked');
    }
    await Promise.all(
      this.set.replicas.map(async (r) => {
        const wasHealthy = r.healthy && !r.broken;
        try {
          const rows = await runSql({ ...primary, host: r.host, port: r.port }, REPLICA_SQL, timeoutMs);
          const [inRecovery, replayLsn, ageSeconds] = rows[0] ?? [];
          const replayed = replayLsn == null ? null : lsnBytes(replayLsn);
          const lagBytes = primaryLsn === null || replayed === null ? 0 : Math.max(0, primaryLsn - replayed);
          this.set.checked(r, { ok: true, inRecovery: inRecovery === 't', lagBytes, lagSeconds: Number(ageSeconds ?? 0) });
        } catch (err) {
          this.set.checked(r, { ok: false, error: (err as Error).message });
        }
        const isHealthy = r.healthy && !r.broken;
        if (wasHealthy !== isHealthy) this.log.warn({ backend: this.set.backend, replica: r.name, reason: r.reason }, isHealthy ? 'replica takes reads again' : 'replica skipped for reads');
      }),
    );
    for (const r of this.set.sweep()) {
      this.log.warn({ backend: this.set.backend, replica: r.name, until: new Date(r.ejectedUntil).toISOString(), ejections: r.ejections }, 'replica ejected as an outlier (failure percentage)');
    }
  }

  stop(): void {
    this.endpoint = null;
    if (this.timer !== null) clearTimeout(this.timer);
    this.timer = null;
  }
}
