/**
 * Read routing for one backend with replicas: its replica set, their health checks, the parser
 * verdicts, and a pool per (replica, primary pool) made on first use.
 */
import type { Logger } from 'pino';
import type { RemoteBackendConfig } from '../config/schema.js';
import type { Pool } from '../pool/pool.js';
import type { ServerEndpoint } from '../pool/server-connection.js';
import { ReplicaHealth } from './health.js';
import type { ReadClassifier } from './read-only.js';
import { ReplicaSet, type ReplicaState } from './replicas.js';
import type { Held } from '../client/units.js';
import type { PreparedStatement } from '../pool/prepared.js';

/** Where a read unit runs: a replica picked by its router; `length` held entries form its first batch. */
export interface ReadTarget {
  router: ReadRouter;
  state: ReplicaState;
  /** Autocommit reads (not a READ ONLY transaction): later batches are routed anew. */
  autocommit: boolean;
  length: number;
}

/** Makes (or finds) the pool with this key and endpoint, registered with the proxy's pools. */
export type PoolMaker = (key: string, endpoint: ServerEndpoint, backendName: string, primaryBackend: string) => Pool;

export class ReadRouter {
  readonly set: ReplicaSet;
  private readonly health: ReplicaHealth;

  constructor(
    readonly backend: string,
    config: RemoteBackendConfig,
    readonly classifier: ReadClassifier,
    private readonly makePool: PoolMaker,
    log: Logger,
  ) {
    this.set = new ReplicaSet(backend, config.replicas, config.readRouting);
    this.health = new ReplicaHealth(this.set, log);
  }

  /** The pool on `replica` for the same database and login as `primary`. */
  poolFor(primary: Pool, replica: ReplicaState): Pool {
    this.health.useEndpoint(primary.endpoint);
    const rest = primary.key.slice(primary.key.indexOf('/'));
    const name = `${this.backend}:${replica.name}`;
    return this.makePool(`${name}${rest}`, { ...primary.endpoint, host: replica.host, port: replica.port }, name, this.backend);
  }

  /**
   * A replica for the first held batch when it only reads (or the user is read-only) and one is
   * eligible; null: the primary.
   */
  target(held: readonly Held[], statements: Map<string, PreparedStatement>, primary: Pool, readOnlyUser: boolean): ReadTarget | null {
    const { kind, length } = this.classifier.batchKind(held, statements);
    if (kind === 'primary' && !readOnlyUser) return null;
    const state = this.pick(primary);
    if (state === null) return null;
    // Autocommit reads hand the connection back after their batch; a read-only transaction (or a
    // read-only user) keeps it until ReadyForQuery idle, like any unit.
    return { router: this, state, autocommit: kind === 'read', length };
  }

  /** The replica for the next read unit (null: read from the primary); starts health checks on first use. */
  private pick(primary: Pool): ReplicaState | null {
    this.health.useEndpoint(primary.endpoint);
    return this.set.pick();
  }

  stop(): void {
    this.health.stop();
  }
}
