/**
 * Postgres refuses a login whose startup settings it cannot apply (an unknown parameter, a bad
 * value, one the user may not set). pgtenant answers logins without a server, so it asks one:
 * once per distinct setting and value per pool, with set_config(..., true) in one statement,
 * which leaves nothing behind when the statement ends.
 */
import { LRUCache } from 'lru-cache';
import type { Pool } from '../pool/pool.js';
import { runSql } from '../pool/run-sql.js';
import { PgError, SqlState } from '../protocol/sqlstate.js';
import { setConfigStatement } from './params.js';

/** Accepted (setting, value) pairs remembered per pool; a client inventing values only evicts old ones. */
const REMEMBERED = 1000;

const accepted = new WeakMap<Pool, LRUCache<string, true>>();

/** The client's settings the pool's server has not yet been asked about (application_name takes any value). */
export function settingsToCheck(pool: Pool, settings: Map<string, string>, serverParams: Map<string, string>): [string, string][] {
  const known = accepted.get(pool);
  const out: [string, string][] = [];
  for (const [k, v] of settings) {
    if (k === 'application_name' || serverParams.get(k) === v || known?.has(`${k}\0${v}`)) continue;
    out.push([k, v]);
  }
  return out;
}

/** Resolves when the server accepts every setting; else rejects with its error as a FATAL login error. */
export async function checkSettings(pool: Pool, settings: [string, string][]): Promise<void> {
  try {
    await runSql(pool.endpoint, setConfigStatement(settings, true), pool.endpoint.connectTimeout);
  } catch (err) {
    const e = err instanceof PgError ? err : new PgError(SqlState.ConnectionUnableToConnect, String(err));
    throw new PgError(e.code, e.message, 'FATAL', e.detail, e.hint);
  }
  let known = accepted.get(pool);
  if (known === undefined) accepted.set(pool, (known = new LRUCache({ max: REMEMBERED })));
  for (const [k, v] of settings) known.set(`${k}\0${v}`, true);
}
