import path from 'node:path';
import type { Logger } from 'pino';
import { startEmbeddedPostgres, type EmbeddedPostgresServer } from '../backend/embedded.js';
import { provisionEmbedded } from '../backend/provision.js';
import { provisionDemoTenants } from '../backend/demo.js';
import { isEmbedded, type Config } from '../config/schema.js';

export interface RunningBackends {
  address(name: string): { host: string; port: number } | undefined;
  stop(): Promise<void>;
}

/** Starts embedded backends (creating their data on first start) and resolves where each backend is. */
export async function startBackends(config: Config, log: Logger): Promise<RunningBackends> {
  const embedded = new Map<string, EmbeddedPostgresServer>();
  const addresses = new Map<string, { host: string; port: number }>();
  try {
    for (const [name, backend] of Object.entries(config.backends)) {
      if (!isEmbedded(backend)) {
        addresses.set(name, { host: backend.host, port: backend.port });
        continue;
      }
      const e = backend.embedded;
      const started = Date.now();
      const server = await startEmbeddedPostgres({
        dataDir: path.resolve(e.dataDir),
        port: e.port,
        user: e.user,
        password: e.password,
        persistent: true,
        onLog: (line) => log.debug({ backend: name }, line),
      });
      embedded.set(name, server);
      addresses.set(name, { host: server.host, port: server.port });
      log.info({ backend: name, port: server.port, dataDir: e.dataDir, ms: Date.now() - started }, 'embedded Postgres started');
      await provisionEmbedded(server, config, log);
      if (e.demoTenants) await provisionDemoTenants(server, name, config, log);
    }
  } catch (err) {
    await Promise.all([...embedded.values()].map((s) => s.stop()));
    throw err;
  }
  return {
    address: (name) => addresses.get(name),
    stop: async () => {
      await Promise.all([...embedded.values()].map((s) => s.stop()));
      embedded.clear();
    },
  };
}
