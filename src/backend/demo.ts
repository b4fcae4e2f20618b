import type { Logger } from 'pino';
import type { Config } from '../config/schema.js';
import { runSql } from '../pool/run-sql.js';
import { TenantDirectory } from '../tenancy/directory.js';
import { quoteIdent, quoteLiteral, rlsSql, schemaSql } from '../tenancy/setup-sql.js';
import type { EmbeddedPostgresServer } from './embedded.js';

const ITEMS = 'CREATE TABLE IF NOT EXISTS items (tenant_id text NOT NULL, id int NOT NULL, name text NOT NULL, PRIMARY KEY (tenant_id, id))';

/**
 * The `npm start` demo: every tenant listed under tenancy.tenants gets an `items` table in its
 * placement, set up the way `pgtenant sql` recommends, with two rows of its own. Tables are owned
 * by the first tenancy-exempt user; tenants log in as the first other user.
 */
export async function provisionDemoTenants(server: EmbeddedPostgresServer, backendName: string, config: Config, log: Logger): Promise<void> {
  const tenancy = config.tenancy;
  const users = Object.entries(config.users);
  const owner = users.find(([, u]) => u.tenancy === 'exempt')?.[0];
  const login = users.find(([, u]) => u.tenancy !== 'exempt')?.[0];
  if (tenancy === undefined || owner === undefined || login === undefined) {
    log.warn('embedded.demoTenants needs a tenancy section, a tenancy-exempt owner user and a tenant user; skipped');
    return;
  }
  const directory = TenantDirectory.fromConfig(config)!;
  const endpoint = (database: string) => ({ host: server.host, port: server.port, user: server.user, password: server.password, database, tls: { mode: 'disable' as const }, connectTimeout: 10_000 });
  const ensureDatabase = async (name: string): Promise<void> => {
    const found = await runSql(endpoint('postgres'), `SELECT 1 FROM pg_database WHERE datname = ${quoteLiteral(name)}`);
    if (found.length === 0) await runSql(endpoint('postgres'), `CREATE DATABASE ${quoteIdent(name)} OWNER ${quoteIdent(owner)}`);
  };
  const seed = (tenant: string): string =>
    `INSERT INTO items VALUES (${quoteLiteral(tenant)}, 1, ${quoteLiteral(`${tenant} first item`)}), (${quoteLiteral(tenant)}, 2, ${quoteLiteral(`${tenant} second item`)}) ON CONFLICT DO NOTHING;`;

  for (const tenant of Object.keys(tenancy.tenants).filter((t) => !/[*?]/.test(t))) {
    const p = directory.placementOf(tenant);
    if (p.backend !== backendName) continue;
    await ensureDatabase(p.database);
    const db = endpoint(p.database);
    // Created by the superuser, then handed to the owner: the owner may lack rights on a fresh schema.
    const table = `${ITEMS}; ${seed(tenant)} ALTER TABLE items OWNER TO ${quoteIdent(owner)};`;
    switch (p.kind) {
      case 'row':
        await runSql(db, table + rlsSql({ table: 'public.items', column: 'tenant_id', columnType: 'text', setting: tenancy.setting, role: login }));
        break;
      case 'schema': {
        const schemaSetup = schemaSql({ tenant, schema: tenancy.placements.schema!.schema, loginRole: login, tenantRole: tenancy.placements.schema!.role });
        await runSql(db, `${schemaSetup} SET search_path = ${quoteIdent(p.schema!)}; ${table} RESET search_path; ${schemaSetup}`);
        break;
      }
      case 'database':
        await runSql(db, `${table} GRANT SELECT, INSERT, UPDATE, DELETE ON items TO ${quoteIdent(login)};`);
        break;
    }
    log.info({ tenant, placement: p.kind, database: p.database, schema: p.schema }, 'demo tenant ready');
  }
}
