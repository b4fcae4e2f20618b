/**
 * Fail-closed database-side setup for tenants (`pgtenant sql rls|schema`): what pgtenant's binding
 * relies on. An unset or empty tenant setting must match no rows; the role clients run as must not
 * own the tables or bypass RLS.
 */

export const quoteIdent = (s: string): string => '"' + s.replace(/"/g, '""') + '"';
export const quoteLiteral = (s: string): string => "'" + s.replace(/'/g, "''") + "'";

/** `public.items` → `"public"."items"`; `items` → `"items"`. */
function qualified(name: string): string {
  return name.split('.').map(quoteIdent).join('.');
}

export interface RlsOptions {
  table: string;
  column: string;
  /** Postgres type of the column; the setting is cast to it so the index on it stays usable. */
  columnType: string;
  /** The setting pgtenant binds (tenancy.setting). */
  setting: string;
  /** The role clients log in as through pgtenant. */
  role: string;
}

export function rlsSql(o: RlsOptions): string {
  const table = qualified(o.table);
  const col = quoteIdent(o.column);
  const current = `(select nullif(pg_catalog.current_setting(${quoteLiteral(o.setting)}, true), '')::${o.columnType})`;
  return `-- Row-level isolation of ${o.table} by ${o.column}, for role ${o.role} through pgtenant.
-- The policy fails closed: with ${o.setting} unset or empty, no row is visible or writable.
ALTER TABLE ${table} ENABLE ROW LEVEL SECURITY;
-- FORCE: the policy applies to the table owner too.
ALTER TABLE ${table} FORCE ROW LEVEL SECURITY;
DROP POLICY IF EXISTS pgtenant_isolation ON ${table};
CREATE POLICY pgtenant_isolation ON ${table}
  USING (${col} = ${current})
  WITH CHECK (${col} = ${current});
GRANT SELECT, INSERT, UPDATE, DELETE ON ${table} TO ${quoteIdent(o.role)};
-- The client role must neither own the table nor bypass RLS, or the policy does not hold.
DO $pgtenant$
BEGIN
  IF EXISTS (SELECT 1 FROM pg_roles WHERE rolname = ${quoteLiteral(o.role)} AND (rolsuper OR rolbypassrls)) THEN
    RAISE EXCEPTION 'role % is a superuser or has BYPASSRLS: row-level security would not apply', ${quoteLiteral(o.role)};
  END IF;
  IF (SELECT pg_catalog.pg_get_userbyid(relowner) FROM pg_class WHERE oid = ${quoteLiteral(table)}::regclass) = ${quoteLiteral(o.role)} THEN
    RAISE EXCEPTION 'role % owns %: use a separate owner role for tables', ${quoteLiteral(o.role)}, ${quoteLiteral(o.table)};
  END IF;
END
$pgtenant$;
`;
}

export interface SchemaOptions {
  tenant: string;
  /** Schema name pattern, {tenant} replaced. */
  schema: string;
  /** The role clients log in as through pgtenant. */
  loginRole: string;
  /** Per-tenant role pattern ({tenant} replaced); when set, only it may use the schema. */
  tenantRole?: string;
}

export function schemaSql(o: SchemaOptions): string {
  const fill = (p: string): string => p.replace(/\{tenant\}/g, o.tenant);
  const schema = quoteIdent(fill(o.schema));
  const login = quoteIdent(o.loginRole);
  const lines = [
    `-- Schema for tenant ${o.tenant}. pgtenant sets search_path to it on every transaction.`,
    `CREATE SCHEMA IF NOT EXISTS ${schema};`,
    `REVOKE ALL ON SCHEMA ${schema} FROM PUBLIC;`,
    `-- Nothing lands in public by accident.`,
    `REVOKE CREATE ON SCHEMA public FROM PUBLIC;`,
  ];
  if (o.tenantRole === undefined) {
    lines.push(
      `-- Without a tenant role, search_path is the only separation: schema-qualified names reach other`,
      `-- tenants' schemas. Set tenancy.placements.schema.role and rerun for grants per tenant.`,
      `GRANT USAGE, CREATE ON SCHEMA ${schema} TO ${login};`,
      `GRANT SELECT, INSERT, UPDATE, DELETE ON ALL TABLES IN SCHEMA ${schema} TO ${login};`,
      `GRANT USAGE, SELECT ON ALL SEQUENCES IN SCHEMA ${schema} TO ${login};`,
    );
  } else {
    const role = quoteIdent(fill(o.tenantRole));
    lines.push(
      `-- The tenant role: no login, no RLS bypass; pgtenant switches to it on every transaction.`,
      `DO $pgtenant$ BEGIN`,
      `  IF NOT EXISTS (SELECT 1 FROM pg_roles WHERE rolname = ${quoteLiteral(fill(o.tenantRole))}) THEN`,
      `    CREATE ROLE ${role} NOLOGIN NOBYPASSRLS;`,
      `  END IF;`,
      `END $pgtenant$;`,
      `-- NOINHERIT: the login role may switch to tenant roles but gets none of their rights by itself.`,
      `ALTER ROLE ${login} NOINHERIT;`,
      `GRANT ${role} TO ${login};`,
      `GRANT USAGE, CREATE ON SCHEMA ${schema} TO ${role};`,
      `GRANT SELECT, INSERT, UPDATE, DELETE ON ALL TABLES IN SCHEMA ${schema} TO ${role};`,
      `GRANT USAGE, SELECT ON ALL SEQUENCES IN SCHEMA ${schema} TO ${role};`,
      `ALTER DEFAULT PRIVILEGES IN SCHEMA ${schema} GRANT SELECT, INSERT, UPDATE, DELETE ON TABLES TO ${role};`,
    );
  }
  return lines.join('\n') + '\n';
}
