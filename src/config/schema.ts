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
  port: port.default(9930),
  users: z.array(z.string()).default([]),
});

const backendTls = z.strictObject({
  mode: z.enum(['disable', 'prefer', 'require', 'verify-full']).default('disable'),
  ca: z.string().optional(),
});

const replica = z.strictObject({ host: z.string(), port: port.default(5432) });

const remoteBackend = z.strictObject({
  host: z.string(),
  port: port.default(5432),
  /** Login the proxy uses on this backend; defaults to the client's user name. */
  user: z.string().optional(),
  /** Password for `user`; defaults to the client's plaintext password from `users` when it has one. */
  password: z.string().optional(),
  tls: backendTls.default({ mode: 'disable' }),
  connectTimeout: duration.default(5000),
  replicas: z.array(replica).default([]),
});

const embeddedBackend = z.strictObject({
  embedded: z.strictObject({
    dataDir: z.string().default('.pgtenant/pgdata'),
    port: port.default(54329),
    user: z.string().default('postgres'),
    password: z.string().default('postgres'),
  }),
  connectTimeout: duration.default(5000),
});

export const backendSchema = z.union([remoteBackend, embeddedBackend]);

const user = z.strictObject({
  /** Plaintext, a SCRAM-SHA-256 verifier (`SCRAM-SHA-256$…`) or an md5 hash (`md5…`). */
  password: z.string().optional(),
  /** How the client must prove who it is. Defaults to scram-sha-256 when a password is set, else trust. */
  auth: z.enum(['scram-sha-256', 'md5', 'cleartext', 'trust']).optional(),
});

const pool = z.strictObject({
  mode: z.enum(['session', 'transaction']).default('transaction'),
  size: z.number().int().positive().default(20),
  queueTimeout: duration.default(5000),
  idleTimeout: duration.default(60_000),
  /** How long SIGTERM waits for running transactions before closing everything. */
  shutdownTimeout: duration.default(10_000),
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
  pool: pool.default(pool.parse({})),
  log: z.strictObject({ level: z.enum(['trace', 'debug', 'info', 'warn', 'error', 'fatal', 'silent']).default('info') }).default({ level: 'info' }),
}).superRefine((cfg, ctx) => {
  if (cfg.route.backend !== undefined && !(cfg.route.backend in cfg.backends)) {
    ctx.addIssue({ code: 'custom', path: ['route', 'backend'], message: `unknown backend "${cfg.route.backend}"; defined: ${Object.keys(cfg.backends).join(', ')}` });
  }
  for (const name of cfg.admin.users) {
    if (!(name in cfg.users)) ctx.addIssue({ code: 'custom', path: ['admin', 'users'], message: `admin user "${name}" is not defined under users` });
  }
});

export type Config = z.output<typeof configSchema>;
export type BackendConfig = z.output<typeof backendSchema>;
export type RemoteBackendConfig = z.output<typeof remoteBackend>;
export type EmbeddedBackendConfig = z.output<typeof embeddedBackend>;
export type UserConfig = z.output<typeof user>;
export type PoolConfig = z.output<typeof pool>;

export function isEmbedded(b: BackendConfig): b is EmbeddedBackendConfig {
  return 'embedded' in b;
}
