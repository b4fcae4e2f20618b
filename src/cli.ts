#!/usr/bin/env node
import { parseArgs } from 'node:util';
import { formatIssues, loadConfigFile } from './config/load.js';
import type { Config } from './config/schema.js';
import { createLogger } from './log/logger.js';
import { Proxy } from './proxy/proxy.js';

const USAGE = `usage: pgtenant <command> [options]

commands:
  start [--config FILE]    run the proxy (default config/pgtenant.yaml, or $PGTENANT_CONFIG)
  check --config FILE      validate a config file; prints every error with file:line, exit 1 on error
`;

function configPath(given: string | undefined): string {
  return given ?? process.env.PGTENANT_CONFIG ?? 'config/pgtenant.yaml';
}

function load(file: string): Config {
  const result = loadConfigFile(file);
  if (!result.ok) {
    process.stderr.write(formatIssues(result.issues) + '\n');
    process.exit(1);
  }
  return result.config;
}

async function start(file: string): Promise<void> {
  const config = load(file);
  const log = createLogger(config.log.level);
  let proxy: Proxy;
  try {
    proxy = await Proxy.start(config, log);
  } catch (err) {
    log.fatal({ err: (err as Error).message }, 'pgtenant could not start');
    process.exit(1);
  }
  let stopping = false;
  const stop = (signal: string): void => {
    if (stopping) return;
    stopping = true;
    log.info({ signal }, 'draining: no new connections, waiting for transactions to finish');
    proxy.shutdown().then(() => process.exit(0), (err: unknown) => {
      log.error({ err }, 'shutdown failed');
      process.exit(1);
    });
  };
  process.on('SIGTERM', () => stop('SIGTERM'));
  process.on('SIGINT', () => stop('SIGINT'));
  process.on('SIGHUP', () => {
    const result = loadConfigFile(file);
    if (!result.ok) {
      log.error({ errors: formatIssues(result.issues) }, 'config reload failed; keeping the running configuration');
      return;
    }
    proxy.reload(result.config);
  });
}

async function main(argv: string[]): Promise<void> {
  const [command, ...rest] = argv;
  const { values } = parseArgs({ args: rest, options: { config: { type: 'string', short: 'c' } }, allowPositionals: true });
  switch (command) {
    case 'start':
      await start(configPath(values.config));
      return;
    case 'check': {
      const file = configPath(values.config);
      load(file);
      process.stdout.write(`${file}: ok\n`);
      return;
    }
    default:
      process.stderr.write(USAGE);
      process.exit(command === undefined || command === 'help' || command === '--help' ? 0 : 1);
  }
}

main(process.argv.slice(2)).catch((err: unknown) => {
  process.stderr.write(`pgtenant: ${(err as Error).message}\n`);
  process.exit(1);
});
