/**
 * The demo a newcomer gets from `npm start`: config/pgtenant.yaml on a fresh embedded Postgres
 * (own data dir and ports here), with the logins the README shows: the owner, the three tenants
 * (database, schema, row placement) and a JWT user.
 */
import { mkdtempSync, rmSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import pg from 'pg';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { mintToken } from '../../src/auth/jwt.js';
import { loadConfigFile } from '../../src/config/load.js';
import type { Config } from '../../src/config/schema.js';
import type { Proxy } from '../../src/proxy/proxy.js';
import { startProxyWith } from '../harness/proxy.js';
import { freePort } from '../harness/ports.js';

let proxy: Proxy;
let config: Config;
let dataDir: string;

const login = async (user: string, password = 'secret'): Promise<pg.Client> => {
  const c = new pg.Client({ host: '127.0.0.1', port: proxy.port, user, password, database: 'app' });
  await c.connect();
  return c;
};

beforeAll(async () => {
  const loaded = loadConfigFile(path.resolve(import.meta.dirname, '../../config/pgtenant.yaml'));
  if (!loaded.ok) throw new Error(JSON.stringify(loaded.issues));
  config = loaded.config;
  dataDir = mkdtempSync(path.join(os.tmpdir(), 'pgtenant-demo-'));
  const main = config.backends.main;
  if (!('embedded' in main)) throw new Error('the demo config should use an embedded backend');
  main.embedded = { ...main.embedded, dataDir, port: await freePort() };
  config.listen = { ...config.listen, port: 0 };
  config.admin = { ...config.admin, port: 0 };
  proxy = await startProxyWith(config);
}, 120_000);

afterAll(async () => {
  await proxy?.close();
  if (dataDir) rmSync(dataDir, { recursive: true, force: true });
});

describe('npm start demo', () => {
  it('serves the owner, each tenant with only its rows, and a JWT user', async () => {
    const owner = await login('app');
    expect((await owner.query('select current_user as u')).rows[0].u).toBe('app');
    await owner.end();
    for (const tenant of ['acme', 'globex', 'initech']) {
      const c = await login(`web@${tenant}`);
      const { rows } = await c.query<{ tenant_id: string }>('select * from items');
      expect(rows.length).toBeGreaterThan(0);
      for (const row of rows) expect(row.tenant_id).toBe(tenant);
      await c.end();
    }
    const token = await mintToken(config.jwt!, { tenant: 'initech', ttlSeconds: 60 });
    const api = await login('api', token);
    const { rows } = await api.query<{ tenant_id: string }>('select * from items');
    expect(rows.length).toBeGreaterThan(0);
    for (const row of rows) expect(row.tenant_id).toBe('initech');
    await api.end();
  });
});
