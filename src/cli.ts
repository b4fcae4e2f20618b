#!/usr/bin/env node
import { existsSync } from 'node:fs';
import { parseArgs } from 'node:util';
import { formatIssues, loadConfigFile } from './config/load.js';
import type { Config } from './config/schema.js';
import { createLogger } from './log/logger.js';
import { Proxy } from './proxy/proxy.js';
import { mintToken } from './auth/jwt.js';
import { rlsSql, schemaSql } from './tenancy/setup-sql.js';
import { usageReportCommand } from './admin/report-cli.js';
import { auditCommand } from './audit/cli.js';

const USAGE = `usage: pgtenant <command> [options]

commands:
  start [--config FILE]    run the proxy (default config/pgtenant.yaml, or $PGTENANT_CONFIG)
  check --config FILE      validate a config file; prints every error with file:line, exit 1 on error
  sql rls --table T --column C [--type text] [--role R] [--config FILE]
                           print fail-closed row-level security SQL for a shared table
  sql schema --tenant T [--role R] [--config FILE]
                           print SQL that creates a tenant's schema with grants limited to it
  token --tenant T [--ttl 3600] [--sub S] [--config FILE]
                           print a JWT (HS256, signed with jwt.secret) that logs in as tenant T
  audit verify FILE... [--key KEY] [--every N]
                           check an audit log's hash chain (FILE alone brings in FILE.1, FILE.2, …)
                           and, with the key, its checkpoints; exit 0 intact, 1 broken, 2 error
  report [--since 1h] [--csv] [--config FILE]
                           per-tenant usage from the running proxy's admin port (table or CSV)
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
    proxy.configFile = file;
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
    proxy.reload(result.config).catch((err: unknown) => log.error({ err: (err as Error).message }, 'config reload failed; keeping the running configuration'));
  });
}

const OPTIONS = {
  config: { type: 'string', short: 'c' },
  table: { type: 'string' },
  column: { type: 'string' },
  type: { type: 'string' },
  role: { type: 'string' },
  tenant: { type: 'string' },
  ttl: { type: 'string' },
  sub: { type: 'string' },
  key: { type: 'string' },
  every: { type: 'string' },
  since: { type: 'string' },
  csv: { type: 'boolean' },
} as const;

type Values = ReturnType<typeof parseArgs<{ options: typeof OPTIONS; allowPositionals: true }>>['values'];

function need(value: string | undefined, flag: string): string {
  if (value === undefined || value === '') {
    process.stderr.write(`pgtenant: ${flag} is required\n\n${USAGE}`);
    process.exit(1);
  }
  return value;
}

/** The config when --config is given (or the default file exists), for defaults of the SQL and token commands. */
function optionalConfig(given: string | undefined): Config | undefined {
  const file = configPath(given);
  return given === undefined && !existsSync(file) ? undefined : load(file);
}

function printSql(kind: string | undefined, values: Values): void {
  const config = optionalConfig(values.config);
  const role = values.role ?? Object.entries(config?.users ?? {}).find(([, u]) => u.tenancy !== 'exempt')?.[0] ?? 'app';
  if (kind === 'rls') {
    process.stdout.write(rlsSql({ table: need(values.table, '--table'), column: need(values.column, '--column'), columnType: values.type ?? 'text', setting: config?.tenancy?.setting ?? 'app.tenant_id', role }));
  } else if (kind === 'schema') {
    const schema = config?.tenancy?.placements.schema;
    process.stdout.write(schemaSql({ tenant: need(values.tenant, '--tenant'), schema: schema?.schema ?? 'tenant_{tenant}', loginRole: role, tenantRole: schema?.role }));
  } else {
    process.stderr.write(`pgtenant: sql needs "rls" or "schema"\n\n${USAGE}`);
    process.exit(1);
  }
}

async function printToken(values: Values): Promise<void> {
  const config = load(configPath(values.config));
  if (config.jwt === undefined) throw new Error('the config has no jwt section');
  const ttl = Number(values.ttl ?? '3600');
  process.stdout.write((await mintToken(config.jwt, { tenant: need(values.tenant, '--tenant'), ttlSeconds: ttl, subject: values.sub })) + '\n');
}

async function main(argv: string[]): Promise<void> {
  const [command, ...rest] = argv;
  const { values, positionals } = parseArgs({ args: rest, options: OPTIONS, allowPositionals: true });
  switch (command) {
    case 'sql':
      printSql(positionals[0], values);
      return;
    case 'token':
      await printToken(values);
      return;
    case 'report': {
      const config = load(configPath(values.config));
      if (config.admin.port === undefined) throw new Error('report reads the admin HTTP port: set admin.port in the config');
      process.stdout.write(await usageReportCommand(`http://${config.admin.host}:${config.admin.port}`, values.since, values.csv === true));
      return;
    }
    case 'audit':
      process.exitCode = auditCommand(positionals, values.key, values.every);
      return;
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
