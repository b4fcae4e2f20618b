import pino from 'pino';
import { configSchema, type Config } from '../../src/config/schema.js';
import { Proxy } from '../../src/proxy/proxy.js';
import { APP_ROLE, backend } from './postgres.js';

/** Config input (before defaults) for a proxy in front of the shared test Postgres. */
export function testConfigInput(overrides: Record<string, unknown> = {}): Record<string, unknown> {
  const pg = backend();
  return {
    listen: { host: '127.0.0.1', port: 0 },
    backends: { main: { host: pg.host, port: pg.port } },
    users: {
      [APP_ROLE.user]: { password: APP_ROLE.password },
      [pg.user]: { password: pg.password },
    },
    pool: { mode: 'transaction', size: 4, queueTimeout: '5s' },
    log: { level: 'silent' },
    ...overrides,
  };
}

/** PGTENANT_TEST_MULTIPLEX=1 runs a suite with fast statements pipelined on shared server connections (transaction mode). */
export function withTestMultiplex(input: Record<string, unknown>): Record<string, unknown> {
  if (process.env.PGTENANT_TEST_MULTIPLEX !== '1') return input;
  const pool = (input.pool ?? {}) as Record<string, unknown>;
  return pool.mode === 'session' ? input : { ...input, pool: { ...pool, multiplex: true, shareBelow: '50ms' } };
}

export function testConfig(overrides: Record<string, unknown> = {}): Config {
  return configSchema.parse(withTestMultiplex(testConfigInput(overrides)));
}

/** A proxy on a random port; `close()` it in afterAll. */
export function startProxy(overrides: Record<string, unknown> = {}): Promise<Proxy> {
  return startProxyWith(testConfig(overrides));
}

/** A proxy on `config` as given, logging at PGTENANT_TEST_LOG (silent by default); `close()` it in afterAll. */
export function startProxyWith(config: Config): Promise<Proxy> {
  return Proxy.start(config, pino({ level: process.env.PGTENANT_TEST_LOG ?? 'silent' }));
}

/** node-postgres / postgres.js connection options for a user through the proxy. */
export function viaProxy(proxy: Proxy, user: string = APP_ROLE.user, password: string = APP_ROLE.password, database: string = APP_ROLE.database) {
  return { host: '127.0.0.1', port: proxy.port, user, password, database };
}
