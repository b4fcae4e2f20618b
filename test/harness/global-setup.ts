import { mkdtemp } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import pg from 'pg';
import type { TestProject } from 'vitest/node';
import { startEmbeddedPostgres } from '../../src/backend/embedded.js';
import { APP_ROLE, grantCreateOnPublic } from './app-role.js';
import { freePort } from './ports.js';
import { startCluster } from './replication.js';

export interface PostgresInfo {
  host: string;
  port: number;
  user: string;
  password: string;
}

declare module 'vitest' {
  export interface ProvidedContext {
    postgres: PostgresInfo;
  }
}

/**
 * One throwaway Postgres shared by all test files of the run: the embedded PostgreSQL 18, or with
 * PGTENANT_TEST_POSTGRES=15 the system's PostgreSQL 15, which (unlike 18) does not report
 * search_path to clients, so the proxy cannot learn it from the server.
 */
export default async function setup(project: TestProject): Promise<() => Promise<void>> {
  const version = process.env.PGTENANT_TEST_POSTGRES || undefined;
  if (version !== undefined && version !== '15') throw new Error(`PGTENANT_TEST_POSTGRES=${version}: only 15 (the system's PostgreSQL 15) is supported`);
  const server = version === '15' ? await startSystemPostgres15() : await startEmbedded();
  try {
    await createAppRole(server.info);
  } catch (err) {
    await server.stop();
    throw err;
  }
  project.provide('postgres', server.info);
  return server.stop;
}

interface TestServer {
  info: PostgresInfo;
  stop(): Promise<void>;
}

async function startEmbedded(): Promise<TestServer> {
  // The temp dir itself is the data dir: the library chowns it to the
  // postgres user when running as root (its mkdtemp mode 0700 would otherwise
  // lock that user out) and deletes it at stop() since it is not persistent.
  const dataDir = await mkdtemp(path.join(os.tmpdir(), 'pgtenant-test-pg-'));
  const server = await startEmbeddedPostgres({
    dataDir,
    port: await freePort(),
    user: 'postgres',
    password: 'postgres',
    persistent: false,
  });
  return { info: { host: server.host, port: server.port, user: server.user, password: server.password }, stop: () => server.stop() };
}

async function startSystemPostgres15(): Promise<TestServer> {
  const cluster = await startCluster(0, ['max_connections = 300']);
  // Trust authentication: the password is not checked.
  return { info: { host: '127.0.0.1', port: cluster.primary.port, user: 'postgres', password: 'postgres' }, stop: () => cluster.stop() };
}

async function createAppRole(info: PostgresInfo): Promise<void> {
  const client = new pg.Client({ ...info, database: 'postgres' });
  await client.connect();
  try {
    await client.query(`CREATE ROLE ${APP_ROLE.user} LOGIN PASSWORD '${APP_ROLE.password}' NOSUPERUSER NOCREATEDB NOCREATEROLE`);
    await client.query(`CREATE DATABASE ${APP_ROLE.database} OWNER ${APP_ROLE.user}`);
  } finally {
    await client.end();
  }
  await grantCreateOnPublic(info, APP_ROLE.database, APP_ROLE.user);
}
