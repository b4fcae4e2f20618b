/**
 * What a login is told about the server, and whether the server would take the client's startup
 * settings. Postgres refuses a login whose startup settings it cannot apply (an unknown parameter,
 * a bad value, one the user may not set). pgtenant answers logins without a server, so it asks one:
 * once per distinct setting and value per pool, with set_config(..., true) in one statement, which
 * leaves nothing behind when the statement ends.
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
function settingsToCheck(pool: Pool, settings: Map<string, string>, serverParams: Map<string, string>): [string, string][] {
  const known = accepted.get(pool);
  const out: [string, string][] = [];
  for (const [k, v] of settings) {
    if (k === 'application_name' || serverParams.get(k) === v || known?.has(`${k}\0${v}`)) continue;
    out.push([k, v]);
  }
  return out;
}

/** Resolves when the server accepts every setting; else rejects with its error as a FATAL login error. */
async function checkSettings(pool: Pool, settings: [string, string][]): Promise<void> {
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

/**
 * The parameters `pool`'s servers report, for a client logging in with `settings`: at once when
 * they are known and every setting was accepted before; else once a first server connection told
 * them (which also proves the backend is there) and the server accepted the settings it was not
 * asked about yet. `failed` gets the FATAL error the login fails with instead.
 */
export function serverParamsForLogin(pool: Pool, settings: Map<string, string>, ready: (params: Map<string, string>) => void, failed: (err: PgError) => void): void {
  const checked = (params: Map<string, string>): void => {
    const unchecked = settingsToCheck(pool, settings, params);
    if (unchecked.length === 0) ready(params);
    else checkSettings(pool, unchecked).then(() => ready(params), failed);
  };
  if (pool.serverParams !== null) {
    checked(pool.serverParams);
    return;
  }
  pool.acquire((err, conn) => {
    if (err || !conn) {
      failed(new PgError(err?.code ?? SqlState.ConnectionUnableToConnect, err?.message ?? 'no server connection', 'FATAL', err?.detail, err?.hint));
      return;
    }
    const params = new Map(conn.params);
    pool.release(conn);
    checked(params);
  });
}
