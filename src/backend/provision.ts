import type { Logger } from 'pino';
import type { Config } from '../config/schema.js';
import { runSql } from '../pool/run-sql.js';
import type { EmbeddedPostgresServer } from './embedded.js';

const literal = (s: string): string => "'" + s.replace(/'/g, "''") + "'";
const ident = (s: string): string => '"' + s.replace(/"/g, '""') + '"';

/**
 * Gives an embedded backend what the config's users need to work out of the box: a login role per
 * user with a plaintext password (not a superuser) and a database of the same name owned by it.
 */
export async function provisionEmbedded(server: EmbeddedPostgresServer, config: Config, log: Logger): Promise<void> {
  const admin = { host: server.host, port: server.port, user: server.user, password: server.password, database: 'postgres', tls: { mode: 'disable' as const }, connectTimeout: 10_000 };
  for (const [name, user] of Object.entries(config.users)) {
    const password = user.password;
    if (password === undefined || password.startsWith('SCRAM-SHA-256$') || name === server.user) continue;
    const roles = await runSql(admin, `SELECT 1 FROM pg_roles WHERE rolname = ${literal(name)}`);
    if (roles.length === 0) {
      await runSql(admin, `CREATE ROLE ${ident(name)} LOGIN PASSWORD ${literal(password)}`);
      log.info({ role: name }, 'created role on embedded Postgres');
    }
    const dbs = await runSql(admin, `SELECT 1 FROM pg_database WHERE datname = ${literal(name)}`);
    if (dbs.length === 0) {
      await runSql(admin, `CREATE DATABASE ${ident(name)} OWNER ${ident(name)}`);
      log.info({ database: name }, 'created database on embedded Postgres');
    }
  }
}
