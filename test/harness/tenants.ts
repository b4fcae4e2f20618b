import { quoteIdent, rlsSql, schemaSql } from '../../src/tenancy/setup-sql.js';
import { APP_ROLE, adminClient, createDatabase, uniqueName } from './postgres.js';
import { testConfigInput, withTestMultiplex } from './proxy.js';

/** Tenants of the shared test layout, by placement. */
export const ROW_TENANTS = ['r1', 'r2', 'r3'];
export const SCHEMA_TENANTS = ['s1', 's2', 's3'];
export const DATABASE_TENANTS = ['d1', 'd2'];
export const ALL_TENANTS = [...ROW_TENANTS, ...SCHEMA_TENANTS, ...DATABASE_TENANTS];
/** Rows each tenant starts with: ids 1..SEED_ROWS, name `<tenant>-<id>`. */
export const SEED_ROWS = 5;

export interface TenantLayout {
  /** Shared database of row and schema tenants. */
  shared: string;
  /** Prefix of this layout's database names and tenant roles. */
  prefix: string;
  databaseOf(tenant: string): string;
  /** `tenancy` section for the proxy config. */
  tenancy: Record<string, unknown>;
  drop(): Promise<void>;
}

const items = 'CREATE TABLE items (tenant_id text NOT NULL, id int NOT NULL, name text NOT NULL, PRIMARY KEY (tenant_id, id))';
const seed = (t: string): string => `INSERT INTO items SELECT '${t}', i, '${t}-' || i FROM generate_series(1, ${SEED_ROWS}) i;`;

/**
 * Creates the three placements the way `pgtenant sql` recommends: a shared database with an RLS
 * table (row tenants) and one schema per schema tenant with its own role, plus a database per
 * database tenant. Tables are owned by the superuser; clients log in as the app role.
 */
/**
 * The schema setup alters the shared app role (NOINHERIT, grants): two test files doing it at once
 * fail with "tuple concurrently updated". Roles are cluster-wide, so the lock is taken in `postgres`.
 */
async function oneAtATime<T>(work: () => Promise<T>): Promise<T> {
  const lock = await adminClient('postgres');
  try {
    await lock.query('SELECT pg_advisory_lock(7301)');
    return await work();
  } finally {
    await lock.end();
  }
}

export async function createTenantLayout(): Promise<TenantLayout> {
  const prefix = uniqueName('tn');
  const shared = await createDatabase(`${prefix}_shared`);
  const admin = await adminClient(shared);
  try {
    await admin.query(`${items}; ${ROW_TENANTS.map(seed).join(' ')}`);
    await admin.query(rlsSql({ table: 'public.items', column: 'tenant_id', columnType: 'text', setting: 'app.tenant_id', role: APP_ROLE.user }));
    for (const t of SCHEMA_TENANTS) {
      const schema = `tenant_${t}`;
      await admin.query(`CREATE SCHEMA ${quoteIdent(schema)}; SET search_path = ${quoteIdent(schema)}; ${items}; ${seed(t)} RESET search_path;`);
      await oneAtATime(() => admin.query(schemaSql({ tenant: t, schema: 'tenant_{tenant}', loginRole: APP_ROLE.user, tenantRole: `${prefix}_{tenant}` })));
    }
  } finally {
    await admin.end();
  }
  for (const t of DATABASE_TENANTS) {
    const db = await createDatabase(`${prefix}_${t}`);
    const c = await adminClient(db);
    try {
      await c.query(`${items}; ${seed(t)} GRANT SELECT, INSERT, UPDATE, DELETE ON items TO ${quoteIdent(APP_ROLE.user)};`);
    } finally {
      await c.end();
    }
  }
  const tenants: Record<string, unknown> = {};
  for (const t of ROW_TENANTS) tenants[t] = { placement: 'row' };
  for (const t of SCHEMA_TENANTS) tenants[t] = { placement: 'schema' };
  for (const t of DATABASE_TENANTS) tenants[t] = { placement: 'database' };
  return {
    shared,
    prefix,
    databaseOf: (t) => (DATABASE_TENANTS.includes(t) ? `${prefix}_${t}` : shared),
    tenancy: {
      placements: {
        row: { database: shared },
        schema: { database: shared, schema: 'tenant_{tenant}', role: `${prefix}_{tenant}` },
        database: { database: `${prefix}_{tenant}` },
      },
      default: 'row',
      tenants,
    },
    async drop() {
      const c = await adminClient();
      try {
        for (const db of [shared, ...DATABASE_TENANTS.map((t) => `${prefix}_${t}`)]) await c.query(`DROP DATABASE IF EXISTS ${quoteIdent(db)} WITH (FORCE)`);
        for (const t of SCHEMA_TENANTS) await c.query(`DROP ROLE IF EXISTS ${quoteIdent(`${prefix}_${t}`)}`);
      } finally {
        await c.end();
      }
    },
  };
}

/** Proxy config input with this layout's tenancy; `app` is a tenant user, the superuser is exempt. */
export function tenantConfigInput(layout: TenantLayout, overrides: Record<string, unknown> = {}): Record<string, unknown> {
  const base = testConfigInput();
  const users = base.users as Record<string, Record<string, unknown>>;
  for (const [name, u] of Object.entries(users)) if (name !== APP_ROLE.user) u.tenancy = 'exempt';
  return withTestMultiplex({ ...base, tenancy: layout.tenancy, ...overrides });
}
