/**
 * What a startup packet asks for, checked against the configuration before authentication: the
 * real user (a `user@tenant` suffix split off), the database, the tenant clues from the user name
 * and `options`, and the settings the client wants on every server connection.
 */
import type { Config } from '../config/schema.js';
import { PgError, SqlState } from '../protocol/sqlstate.js';
import { TENANT_OPTION } from '../tenancy/resolver.js';
import type { Tenancy } from '../tenancy/tenancy.js';
import { FORBIDDEN_SETTINGS, settingsFromStartup } from './params.js';
import { parseOptions } from './startup.js';

export interface LoginRequest {
  user: string;
  database: string;
  userTenant?: string;
  optionsTenant?: string;
  settings: Map<string, string>;
}

export function readLoginRequest(params: Map<string, string>, config: Config, tenancy: Tenancy | null, adminDatabase: string): LoginRequest {
  if (params.has('replication') && params.get('replication') !== 'false') {
    throw new PgError(SqlState.FeatureNotSupported, 'replication connections are not supported through pgtenant', 'FATAL');
  }
  const startupUser = params.get('user');
  if (!startupUser) throw new PgError(SqlState.InvalidAuthorizationSpecification, 'no PostgreSQL user name specified in startup packet', 'FATAL');
  const split = tenancy === null ? { user: startupUser } : tenancy.splitUser(startupUser, (name) => name in config.users);
  const database = params.get('database') || startupUser;
  const options = parseOptions(params.get('options') ?? '');
  const optionsTenant = options.get(TENANT_OPTION);
  options.delete(TENANT_OPTION);
  const settings = settingsFromStartup(params, options);
  const protectedNames = tenancy === null ? null : new Set([tenancy.config.setting.toLowerCase(), 'request.jwt.claims', 'search_path']);
  for (const name of settings.keys()) {
    if (FORBIDDEN_SETTINGS.has(name) || protectedNames?.has(name.toLowerCase())) {
      throw new PgError(SqlState.InsufficientPrivilege, `setting "${name}" at startup is not allowed through pgtenant`, 'FATAL');
    }
  }
  if (protectedNames !== null && config.users[split.user]?.tenancy !== 'exempt' && database !== adminDatabase) checkGuardableSettings(settings);
  return { user: split.user, database, userTenant: split.tenant, optionsTenant, settings };
}

/** The guard reads statement text as UTF-8 with standard-conforming strings; a tenant session must not change that. */
function checkGuardableSettings(settings: Map<string, string>): void {
  const scs = settings.get('standard_conforming_strings');
  if (scs !== undefined && !/^(on|true|yes|1)$/i.test(scs)) {
    throw new PgError(SqlState.FeatureNotSupported, 'tenant sessions need standard_conforming_strings = on', 'FATAL');
  }
  const encoding = settings.get('client_encoding');
  if (encoding !== undefined && !/^(utf-?8|unicode)$/i.test(encoding.replace(/['"]/g, ''))) {
    throw new PgError(SqlState.FeatureNotSupported, `tenant sessions need client_encoding UTF8 (got "${encoding}")`, 'FATAL');
  }
}
