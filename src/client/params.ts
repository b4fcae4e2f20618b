/** Session parameters a client may set that pgtenant carries across pooled server connections. */
import { quoteIdent, quoteLiteral } from '../tenancy/setup-sql.js';

/** Canonical spelling of GUCs the server reports in ParameterStatus (names are case-insensitive). */
const CANONICAL = new Map<string, string>([
  ['client_encoding', 'client_encoding'],
  ['datestyle', 'DateStyle'],
  ['timezone', 'TimeZone'],
  ['intervalstyle', 'IntervalStyle'],
  ['application_name', 'application_name'],
  ['standard_conforming_strings', 'standard_conforming_strings'],
  ['search_path', 'search_path'],
]);

/** Reported by the server but fixed for the connection: never replayed. */
const SERVER_OWNED = new Set(['server_version', 'server_encoding', 'integer_datetimes', 'is_superuser', 'session_authorization', 'in_hot_standby', 'default_transaction_read_only', 'scram_iterations']);

/** Startup keys that are not settings. */
const NOT_SETTINGS = new Set(['user', 'database', 'options', 'replication']);

/** Settings a client may not choose for itself: they would change who it is on a shared server connection. */
export const FORBIDDEN_SETTINGS = new Set(['role', 'session_authorization']);

export function canonicalName(name: string): string {
  const lower = name.toLowerCase();
  return CANONICAL.get(lower) ?? lower;
}

/** Whether a ParameterStatus from the server reflects a choice of the client that must follow it to other server connections. */
export function isClientParameter(name: string): boolean {
  return !SERVER_OWNED.has(name);
}

/**
 * The parameters a client is told at login: the server's, with the client's own values where it
 * chose them (and its application_name, which the server reports only once set). The client then
 * expects each reported value, so the ones it did not choose join `settings`: a server connection
 * another client changed is set back before this client uses it.
 */
export function pinReportedParameters(serverParams: Map<string, string>, settings: Map<string, string>): Map<string, string> {
  const shown = new Map(serverParams);
  for (const [k, v] of settings) if (shown.has(k) || k === 'application_name') shown.set(k, v);
  for (const [k, v] of shown) if (isClientParameter(k) && !settings.has(k)) settings.set(k, v);
  return shown;
}

/** Startup parameters (options already expanded) → settings to keep for the client. */
export function settingsFromStartup(params: Map<string, string>, options: Map<string, string>): Map<string, string> {
  const settings = new Map<string, string>();
  for (const [k, v] of params) if (!NOT_SETTINGS.has(k) && !SERVER_OWNED.has(k)) settings.set(canonicalName(k), v);
  for (const [k, v] of options) settings.set(canonicalName(k), v);
  return settings;
}

/**
 * A statement that brings a server connection's settings to what the client expects; '' when they
 * match. set_config takes the value as a whole, as the server reported it (list settings such as
 * search_path included, which SET would read as one quoted element).
 */
export function settingsDiff(wanted: Map<string, string>, server: Map<string, string>): string {
  // Every checkout asks: nothing is allocated while the settings match.
  let differing: [string, string][] | null = null;
  for (const [k, v] of wanted) if (server.get(k) !== v) (differing ??= []).push([k, v]);
  return differing === null ? '' : setConfigStatement(differing, false);
}

/**
 * Settings a server connection has that the client never chose, and their `RESET`s (null: none):
 * an earlier client's settings the server does not report back (statement_timeout, for instance),
 * and on servers before PostgreSQL 18 a schema tenant's search_path. `boundByTenant`: a setting
 * the client's tenant binding sets itself.
 */
export function strayResets(wanted: Map<string, string>, server: Map<string, string>, boundByTenant: string | undefined): { names: string[]; sql: string } | null {
  let names: string[] | null = null;
  for (const k of server.keys()) {
    if (!wanted.has(k) && k !== boundByTenant && isClientParameter(k)) (names ??= []).push(k);
  }
  return names === null ? null : { names, sql: names.map((k) => `RESET ${quoteIdent(k)}`).join('; ') };
}

/** `SELECT set_config(...), ...` for each setting; `local`: undone when the statement's transaction ends. '' for none. */
export function setConfigStatement(settings: [string, string][], local: boolean): string {
  if (settings.length === 0) return '';
  return `SELECT ${settings.map(([k, v]) => `pg_catalog.set_config(${quoteLiteral(k)}, ${quoteLiteral(v)}, ${local})`).join(', ')}`;
}
