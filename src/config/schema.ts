import { z } from 'zod';

/** "5s", "250ms", "2m", "1h" or a bare number of milliseconds → milliseconds. */
export const duration = z.union([
  z.number().int().nonnegative(),
  z.string().regex(/^\d+(\.\d+)?\s*(ms|s|m|h)$/, 'expected a duration like 250ms, 5s, 2m or 1h'),
]).transform((v) => {
  if (typeof v === 'number') return v;
  const m = /^(\d+(?:\.\d+)?)\s*(ms|s|m|h)$/.exec(v)!;
  const n = Number(m[1]);
  const unit = { ms: 1, s: 1000, m: 60_000, h: 3_600_000 }[m[2] as 'ms' | 's' | 'm' | 'h'];
  return Math.round(n * unit);
});

const port = z.number().int().min(0).max(65535);

const tlsFiles = z.strictObject({
  cert: z.string(),
  key: z.string(),
  ca: z.string().optional(),
});

const listen = z.strictObject({
  host: z.string().default('127.0.0.1'),
  port: port.default(6432),
  tls: tlsFiles.optional(),
  /** Allow cleartext password auth on connections that are not TLS (off: it sends the password in the clear). */
  allowCleartextWithoutTls: z.boolean().default(false),
  maxClients: z.number().int().positive().default(10_000),
});

const admin = z.strictObject({
  host: z.string().default('127.0.0.1'),
  /** HTTP port for /metrics, /health, /ready, /tenants and the dashboard; none when unset. */
  port: port.optional(),
  /** Users who may open the admin console (database `pgtenant` on the listen port). */
  users: z.array(z.string()).default([]),
  /** Tenants with their own metric labels (busiest first); the rest are summed as "other". */
  metricsTopTenants: z.number().int().positive().default(50),
});

const backendTls = z.strictObject({
  mode: z.enum(['disable', 'prefer', 'require', 'verify-full']).default('disable'),
  ca: z.string().optional(),
});

const replica = z.strictObject({
  /** Label in metrics and logs; defaults to host:port. */
  name: z.string().regex(/^[A-Za-z0-9_.:-]+$/, 'letters, digits and _ . : - only').optional(),
  host: z.string(),
  port: port.default(5432),
});

/** Outlier ejection (gRPC A50, failure percentage): over each health interval… */
const ejection = z.strictObject({
  /** …a replica with at least this many units… */
  minRequests: z.number().int().positive().default(10),
  /** …of which at least this percentage failed (connection lost or refused) is ejected… */
  failurePercent: z.number().min(1).max(100).default(50),
  /** …for this long times the number of its ejections so far, capped at maxTime… */
  baseTime: duration.default(30_000),
  maxTime: duration.default(300_000),
  /** …unless that would eject more than this percentage of the replicas (one may always be ejected). */
  maxPercent: z.number().min(0).max(100).default(50),
});

/** How read-only units are spread over a backend's replicas (transaction mode). */
const readRouting = z.strictObject({
  /** How often each replica is checked (connect, pg_is_in_recovery, replay position). */
  healthInterval: duration.default(2000),
  /** Skip a replica whose replay position is further behind the primary than this many bytes of WAL. */
  maxLagBytes: z.number().int().nonnegative().default(16 * 1024 * 1024),
  /** Skip a replica behind the primary whose last replayed transaction is older than this. */
  maxLagTime: duration.default(30_000),
  ejection: ejection.default(ejection.parse({})),
});

const remoteBackend = z.strictObject({
  /** A TCP host, or (starting with '/') the directory of the server's Unix-domain socket, as in libpq. */
  host: z.string(),
  port: port.default(5432),
  /** Login the proxy uses on this backend; defaults to the client's user name. */
  user: z.string().optional(),
  /** Password for `user`; defaults to the client's plaintext password from `users` when it has one. */
  password: z.string().optional(),
  tls: backendTls.default({ mode: 'disable' }),
  connectTimeout: duration.default(5000),
  /** Hot standbys of this backend: read-only units go to one of them (P2C over peak-EWMA latency). */
  replicas: z.array(replica).default([]),
  readRouting: readRouting.default(readRouting.parse({})),
});

const embeddedBackend = z.strictObject({
  embedded: z.strictObject({
    dataDir: z.string().default('.pgtenant/pgdata'),
    port: port.default(54329),
    user: z.string().default('postgres'),
    password: z.string().default('postgres'),
    /** Create a sample `items` table for each tenant listed under tenancy.tenants (the `npm start` demo). */
    demoTenants: z.boolean().default(false),
  }),
  connectTimeout: duration.default(5000),
});

export const backendSchema = z.union([remoteBackend, embeddedBackend]);

const user = z.strictObject({
  /** Plaintext, a SCRAM-SHA-256 verifier (`SCRAM-SHA-256$…`) or an md5 hash (`md5…`). */
  password: z.string().optional(),
  /** How the client must prove who it is. Defaults to scram-sha-256 when a password is set, else trust. */
  /** `jwt`: the password must be a JWT (verified with the jwt section); it names the tenant and its claims. */
  auth: z.enum(['scram-sha-256', 'md5', 'cleartext', 'trust', 'jwt']).optional(),
  /** The login pgtenant uses on the backend for this user (a user defined here; its password is used): e.g. JWT users running as `web`. */
  backendUser: z.string().optional(),
  /** With a tenancy section: `required` (every login names a tenant) or `exempt` (owners, migrations: no binding, no guard). */
  tenancy: z.enum(['required', 'exempt']).default('required'),
  /** Route every unit of this user to a replica when one is healthy (a routing choice, not a permission: grant read-only roles for that). */
  readOnly: z.boolean().default(false),
});

const jwt = z.strictObject({
  /** HMAC secret for HS256/384/512 (also what `pgtenant token` signs with). */
  secret: z.string().min(16, 'jwt.secret must be at least 16 characters').optional(),
  /** PEM file with a public key (RS256, ES256, EdDSA). */
  publicKey: z.string().optional(),
  /** JSON Web Key Set file. */
  jwks: z.string().optional(),
  algorithms: z.array(z.enum(['HS256', 'HS384', 'HS512', 'RS256', 'ES256', 'EdDSA'])).default(['HS256', 'HS384', 'HS512', 'RS256', 'ES256', 'EdDSA']),
  issuer: z.string().optional(),
  audience: z.string().optional(),
  /** Dot path of the claim that names the tenant. */
  tenantClaim: z.string().default('tenant_id'),
  /** Allowed clock skew for exp/nbf. */
  clockTolerance: duration.default(0),
}).refine((j) => j.secret !== undefined || j.publicKey !== undefined || j.jwks !== undefined, 'jwt needs a key: secret, publicKey or jwks');

const limits = z.strictObject({
  maxClients: z.number().int().positive().optional(),
  /** Largest fraction of a pool's server connections one tenant may hold at once. */
  poolShare: z.number().gt(0).max(1).optional(),
  statementTimeout: duration.optional(),
});

const placementKind = z.enum(['row', 'schema', 'database']);

const placements = z.strictObject({
  row: z.strictObject({
    backend: z.string().optional(),
    database: z.string(),
  }).optional(),
  schema: z.strictObject({
    backend: z.string().optional(),
    database: z.string(),
    /** Schema name; {tenant} is replaced by the tenant id. */
    schema: z.string().default('tenant_{tenant}'),
    /**
     * Role each schema tenant's transactions run as ({tenant} replaced), granted only its own schema
     * (`pgtenant sql schema` creates it). Without it, search_path alone separates schema tenants.
     */
    role: z.string().optional(),
  }).optional(),
  database: z.strictObject({
    backend: z.string().optional(),
    /** Database name; {tenant} is replaced by the tenant id. */
    database: z.string().default('tenant_{tenant}'),
  }).optional(),
});

const tenantEntry = z.strictObject({
  placement: placementKind.optional(),
  backend: z.string().optional(),
  database: z.string().optional(),
  schema: z.string().optional(),
  limits: limits.default({}),
});

const resolveSource = z.enum(['user', 'options', 'jwt', 'sni', 'database']);

const tenancy = z.strictObject({
  resolve: z.array(resolveSource).min(1).default(['user', 'options', 'jwt', 'sni', 'database']),
  /** Characters that split `user@tenant` / `user.tenant` in the startup user name. */
  userSeparators: z.array(z.string().length(1)).default(['@', '.']),
  /** Database names that stand for a tenant (database source). */
  databases: z.record(z.string(), z.string()).default({}),
  /** SNI names `<tenant>.<sniSuffix>` name the tenant (sni source); without it, the first label of a name with 3+ labels. */
  sniSuffix: z.string().optional(),
  unknown: z.enum(['reject', 'default']).default('reject'),
  /** Setting that carries the tenant id in every placement (RLS policies read it). */
  setting: z.string().regex(/^[a-z_][a-z0-9_]*\.[a-z_][a-z0-9_.]*$/i, 'a custom setting name with a dot, like app.tenant_id').default('app.tenant_id'),
  placements,
  default: placementKind.default('row'),
  /** Tenant ids or glob patterns (`trial-*`) with their overrides. */
  tenants: z.record(z.string(), tenantEntry).default({}),
  /** Reject statements that change the tenant binding (42501). */
  guard: z.boolean().default(true),
});

const pool = z.strictObject({
  mode: z.enum(['session', 'transaction']).default('transaction'),
  size: z.number().int().positive().default(20),
  queueTimeout: duration.default(5000),
  idleTimeout: duration.default(60_000),
  /** How long SIGTERM waits for running transactions before closing everything. */
  shutdownTimeout: duration.default(10_000),
  /**
   * Transaction mode: pipeline fast autocommit statements of many clients on a few shared server
   * connections (fewer round trips and system calls); everything else keeps a connection to itself.
   */
  multiplex: z.boolean().default(false),
  /** Server connections per pool that shared statements are pipelined on. */
  sharedConnections: z.number().int().positive().default(2),
  /** Statement shapes slower than this (measured, peak-weighted) get a connection to themselves. */
  shareBelow: duration.default(5),
  /** Server-side prepared statements kept per server connection before the oldest is closed. */
  maxPreparedStatements: z.number().int().positive().default(500),
});

const route = z.strictObject({
  /** Backend that clients reach when no tenant placement says otherwise; defaults to the first backend. */
  backend: z.string().optional(),
});

export const configSchema = z.strictObject({
  listen: listen.default(listen.parse({})),
  admin: admin.default(admin.parse({})),
  backends: z.record(z.string(), backendSchema).refine((b) => Object.keys(b).length > 0, 'at least one backend is required'),
  users: z.record(z.string(), user).default({}),
  route: route.default({}),
  jwt: jwt.optional(),
  tenancy: tenancy.optional(),
  /** Tamper-evident audit log (hash-chained JSON lines; verify with `pgtenant audit verify`). */
  audit: z.strictObject({
    file: z.string(),
    /** HMAC key for periodic signed checkpoints. */
    checkpointKey: z.string().min(16, 'audit.checkpointKey must be at least 16 characters').optional(),
    checkpointEvery: z.number().int().positive().default(1000),
    /** Rotate beyond this many bytes; the chain continues in the next file. */
    maxBytes: z.number().int().positive().optional(),
  }).optional(),
  pool: pool.default(pool.parse({})),
  log: z.strictObject({ level: z.enum(['trace', 'debug', 'info', 'warn', 'error', 'fatal', 'silent']).default('info') }).default({ level: 'info' }),
}).superRefine((cfg, ctx) => {
  if (cfg.route.backend !== undefined && !(cfg.route.backend in cfg.backends)) {
    ctx.addIssue({ code: 'custom', path: ['route', 'backend'], message: `unknown backend "${cfg.route.backend}"; defined: ${Object.keys(cfg.backends).join(', ')}` });
  }
  const t = cfg.tenancy;
  if (t !== undefined) {
    const backendOk = (b: string | undefined, path: (string | number)[]): void => {
      if (b !== undefined && !(b in cfg.backends)) ctx.addIssue({ code: 'custom', path, message: `unknown backend "${b}"; defined: ${Object.keys(cfg.backends).join(', ')}` });
    };
    for (const kind of ['row', 'schema', 'database'] as const) backendOk(t.placements[kind]?.backend, ['tenancy', 'placements', kind, 'backend']);
    const used = new Set([t.default, ...Object.values(t.tenants).map((e) => e.placement ?? t.default)]);
    for (const kind of used) {
      if (t.placements[kind] === undefined) ctx.addIssue({ code: 'custom', path: ['tenancy', 'placements'], message: `placement "${kind}" is used but not defined under tenancy.placements` });
    }
    for (const [id, e] of Object.entries(t.tenants)) backendOk(e.backend, ['tenancy', 'tenants', id, 'backend']);
    if (t.resolve.includes('jwt') && cfg.jwt === undefined && Object.values(cfg.users).some((u) => u.auth === 'jwt')) {
      ctx.addIssue({ code: 'custom', path: ['jwt'], message: 'users with auth: jwt need a jwt section with a key' });
    }
  }
  for (const [name, u] of Object.entries(cfg.users)) {
    if (u.backendUser !== undefined && !(u.backendUser in cfg.users)) ctx.addIssue({ code: 'custom', path: ['users', name, 'backendUser'], message: `backendUser "${u.backendUser}" is not defined under users` });
  }
  for (const [name, b] of Object.entries(cfg.backends)) {
    if (isEmbedded(b)) continue;
    const names = b.replicas.map(replicaName);
    const twice = names.find((n, i) => names.indexOf(n) !== i);
    if (twice !== undefined) ctx.addIssue({ code: 'custom', path: ['backends', name, 'replicas'], message: `replica "${twice}" is listed twice; give each replica its own name` });
    const socketHost = [b.host, ...b.replicas.map((r) => r.host)].find(isSocketDirectory);
    if (socketHost !== undefined && (b.tls.mode === 'require' || b.tls.mode === 'verify-full')) {
      ctx.addIssue({ code: 'custom', path: ['backends', name, 'tls', 'mode'], message: `tls.mode ${b.tls.mode} cannot be met over the Unix-domain socket in ${socketHost}: Postgres offers no TLS there; use a TCP host or tls.mode disable/prefer` });
    }
  }
  for (const name of cfg.admin.users) {
    if (!(name in cfg.users)) ctx.addIssue({ code: 'custom', path: ['admin', 'users'], message: `admin user "${name}" is not defined under users` });
  }
});

/** A backend host naming the directory of the server's Unix-domain socket, as libpq reads a host starting with '/'. */
export function isSocketDirectory(host: string): boolean {
  return host.startsWith('/');
}

export type Config = z.output<typeof configSchema>;
export type BackendConfig = z.output<typeof backendSchema>;
export type RemoteBackendConfig = z.output<typeof remoteBackend>;
export type EmbeddedBackendConfig = z.output<typeof embeddedBackend>;
export type UserConfig = z.output<typeof user>;
export type ReadRoutingConfig = z.output<typeof readRouting>;
export type ReplicaConfig = z.output<typeof replica>;
export type PoolConfig = z.output<typeof pool>;
export type JwtConfig = z.output<typeof jwt>;
export type TenancyConfig = z.output<typeof tenancy>;
export type TenantEntry = z.output<typeof tenantEntry>;
export type PlacementKind = z.output<typeof placementKind>;
export type TenantLimits = z.output<typeof limits>;

/** A replica's label in metrics and logs: its name, else host:port. */
export function replicaName(r: ReplicaConfig): string {
  return r.name ?? `${r.host}:${r.port}`;
}

export function isEmbedded(b: BackendConfig): b is EmbeddedBackendConfig {
  return 'embedded' in b;
}
