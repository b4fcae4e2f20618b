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

  /** The replica for the next read unit (null: read from the primary); starts health checks on first use. */
  pick(primary: Pool): ReplicaState | null {
    this.health.useEndpoint(primary.endpoint);
    return this.set.pick();
  }

  stop(): void {
    this.health.stop();
  }
}
