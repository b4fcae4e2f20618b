/**
 * What goes ahead of a client's messages on a server connection: resets of settings an earlier
 * client left, the session settings it differs in, and the tenant binding unless the same binding
 * is known to be in place already.
 */
import { query } from '../protocol/messages.js';
import { BINDING, Request, SIMPLE, SKIP } from '../pool/pending.js';
import type { ServerConnection, ServerOwner } from '../pool/server-connection.js';
import type { Binding } from '../tenancy/binding.js';
import type { TenantContext } from '../tenancy/tenancy.js';
import { settingsDiff, strayResets } from './params.js';

/**
 * Sends the client's settings and tenant binding ahead of its messages. Returns the binding to
 * keep in place after the unit if it turns out pure (`keepBindings`, connections of its own only);
 * null otherwise.
 */
export function sendSessionState(conn: ServerConnection, owner: ServerOwner, settings: Map<string, string>, tenant: TenantContext | null, keepBindings: boolean): Buffer | null {
  // What another tenant's unit may have changed here (statement_timeout, work_mem, …) is unknown:
  // back to how the connection started. Within one tenant, as with any pooler, a SET stays.
  const changedBy = conn.settingsChangedBy;
  const resetAll = changedBy !== null && changedBy !== (tenant?.tenant ?? '');
  if (resetAll) {
    conn.settingsReset();
    sendOwnQuery(conn, 'RESET ALL');
  }
  // A client must not run under what an earlier one set (nor resolve names through a schema tenant's
  // search_path). In a query of its own: in one with the settings, a setting that fails would roll it back.
  const stray = strayResets(settings, conn.params, tenant?.binding.searchPath === undefined ? undefined : 'search_path');
  if (stray !== null) {
    for (const k of stray.names) conn.params.delete(k);
    sendOwnQuery(conn, stray.sql);
  }
  const diff = settingsDiff(settings, conn.params);
  if (diff !== '') {
    for (const [k, v] of settings) conn.params.set(k, v);
    sendOwnQuery(conn, diff);
  }
  if (tenant === null) {
    if (!conn.shared) conn.bindingInPlace = null;
    return null;
  }
  const apply = tenant.binding.apply;
  // The same binding in place (only statements that cannot change it ran since it was sent) and no
  // setting changed now: nothing to send. Any other tenant's binding differs, so it is always sent.
  const inPlace = conn.bindingInPlace;
  const unchanged = !resetAll && stray === null && diff === '' && inPlace !== null && (inPlace === apply || inPlace.equals(apply));
  // Still unanswered, it may yet fail: then this unit fails with it.
  if (unchanged) conn.bindingsPending.at(-1)?.reliant.push(owner);
  let keep: Buffer | null = null;
  if (conn.shared) conn.bindingInPlace = apply;
  else {
    // A connection of its own may run anything: the binding is known again only after a pure unit.
    conn.bindingInPlace = null;
    if (keepBindings) keep = apply;
  }
  if (!unchanged) sendBinding(conn, tenant.binding);
  return keep;
}

/** Its answers are swallowed; if it fails, the connection's settings are unknown (see reportSwallowed). */
function sendOwnQuery(conn: ServerConnection, sql: string): void {
  conn.pending.push(Request.Sync, SKIP | SIMPLE);
  conn.sendOwned(query(sql));
}

/**
 * The tenant context goes ahead of the client's first message on every checkout, in its own
 * Sync so that nothing the client does (ROLLBACK included) can undo it. Its responses are
 * swallowed; if it fails, the session closes the client and the server connection.
 */
function sendBinding(conn: ServerConnection, binding: Binding): void {
  // What the server will report; on a shared connection the next unit's settings are compared to it before the report arrives.
  if (binding.searchPath !== undefined) conn.params.set('search_path', binding.searchPath);
  if (!conn.bindings.has(binding.statementName)) {
    conn.bindings.add(binding.statementName);
    conn.pending.push(Request.Parse, SKIP | BINDING);
    conn.sendOwned(binding.parse);
  }
  conn.pending.push(Request.Bind, SKIP | BINDING);
  conn.pending.push(Request.Execute, SKIP | BINDING);
  conn.pending.push(Request.Sync, SKIP | BINDING);
  conn.bindingsPending.push({ reliant: [] });
  conn.sendOwned(binding.apply);
}
