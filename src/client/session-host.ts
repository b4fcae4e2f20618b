import type tls from 'node:tls';
import type { Logger } from 'pino';
import type { Config } from '../config/schema.js';
import type { Pool } from '../pool/pool.js';
import type { JwtVerifier } from '../auth/jwt.js';
import type { Tenancy } from '../tenancy/tenancy.js';
import type { UsageRegistry } from '../stats/usage.js';
import type { UnitClassifier } from '../sql/classify.js';
import type { ReadRouter } from '../routing/router.js';
import type { AdminTarget } from '../admin/console.js';
import type { AuditKind } from '../audit/log.js';
import type { ClientSession } from './session.js';

/** What a client session needs from the proxy around it. */
export interface SessionHost {
  readonly config: Config;
  readonly log: Logger;
  readonly tlsContext: tls.SecureContext | null;
  /** Registers the session for cancel requests; returns its BackendKeyData. */
  register(session: ClientSession): { pid: number; secret: number };
  unregister(session: ClientSession): void;
  cancel(pid: number, secret: number): void;
  /** The pool for a user and database; `backend` defaults to the route's. */
  poolFor(user: string, database: string, backend?: string): Pool;
  /** Tenancy under the current configuration (null without a tenancy section) and its generation. */
  readonly tenancy: Tenancy | null;
  readonly tenancyEpoch: number;
  readonly jwtVerifier: JwtVerifier | null;
  /** Counts the client against its tenant's maxClients (53300 beyond it). */
  admitTenant(session: ClientSession, tenant: string, maxClients: number | undefined): void;
  /** Read routing for the backend of a primary pool (null: no replicas). */
  readRouterFor(pool: Pool): ReadRouter | null;
  /** Decides which statements may share a pipelined server connection (pool.multiplex). */
  readonly classifier: UnitClassifier | null;
  /** Per-tenant usage and latency. */
  readonly usage: UsageRegistry;
  /** What the admin console reads and steers. */
  readonly adminTarget: AdminTarget;
  /** Records a security-relevant event in the audit log (when configured). */
  audit(kind: AuditKind, fields: Record<string, unknown>): void;
  /** Whether the tenant's new transactions are held (admin PAUSE); `resume` runs when released, the returned function cancels. */
  whenResumed(tenant: string, resume: () => void): (() => void) | null;
  /** A guarded statement was refused: count and log it. */
  statementBlocked(session: ClientSession, reason: string, fingerprint: string): void;
  /** Whether new logins are refused (shutting down). */
  readonly draining: boolean;
}
