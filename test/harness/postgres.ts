import { randomBytes } from 'node:crypto';
import pg from 'pg';
import { inject } from 'vitest';
import type { PostgresInfo } from './global-setup.js';
import { grantCreateOnPublic } from './app-role.js';

export { APP_ROLE } from './app-role.js';
export type { PostgresInfo };

/** Connection info of the shared embedded Postgres (superuser). */
export function backend(): PostgresInfo {
  return inject('postgres');
}

/** A connected client as the superuser; the caller ends it. */
export async function adminClient(database = 'postgres'): Promise<pg.Client> {
  const client = new pg.Client({ ...backend(), database });
  await client.connect();
  return client;
}

/**
 * A name unlikely to clash across parallel test files and reruns. Kept
 * lowercase and well under the 63-byte identifier limit so it needs no quoting.
 */
export function uniqueName(prefix: string): string {
  if (!/^[a-z_][a-z0-9_]{0,39}$/.test(prefix)) throw new Error(`bad name prefix: ${prefix}`);
  return `${prefix}_${randomBytes(6).toString('hex')}`;
}

/** (Re)creates a database, dropping any existing one and its connections; returns the name. */
export async function createDatabase(name: string, owner?: string): Promise<string> {
  const client = await adminClient();
  try {
    const db = client.escapeIdentifier(name);
    await client.query(`DROP DATABASE IF EXISTS ${db} WITH (FORCE)`);
    await client.query(`CREATE DATABASE ${db}${owner === undefined ? '' : ` OWNER ${client.escapeIdentifier(owner)}`}`);
  } finally {
    await client.end();
  }
  if (owner !== undefined) await grantCreateOnPublic(backend(), name, owner);
  return name;
}
