import type { AcquireCallback, Pool } from '../pool/pool.js';
import type { ClientSession } from './session.js';

/**
 * Asks `pool` for a server connection for `client`: a shared (pipelined) one, or one of its own
 * within its tenant's share of the pool. `then` runs when the pool answers, maybe in another
 * client's turn, so what it throws fails this client. Returns how to withdraw the request while it
 * waits (a connection that arrives after that goes back), or null when the pool answered at once.
 */
export function requestConnection(client: Pick<ClientSession, 'tenant' | 'failOn'>, pool: Pool, shared: boolean, then: AcquireCallback): (() => void) | null {
  let cancelled = false;
  let answered = false;
  const answer: AcquireCallback = (err, conn) => {
    answered = true;
    if (cancelled) {
      if (conn) {
        if (shared) pool.sharedDrained(conn);
        else pool.release(conn);
      }
      return;
    }
    try {
      then(err, conn);
    } catch (e) {
      client.failOn(e);
    }
  };
  let cancel: () => void;
  if (shared) cancel = pool.acquireShared(answer);
  else {
    const share = client.tenant?.placement.limits.poolShare;
    cancel = pool.acquire(answer, client.tenant?.tenant, share === undefined ? Infinity : Math.max(1, Math.floor(pool.settings.size * share)));
  }
  if (answered) return null;
  return () => {
    cancelled = true;
    cancel();
  };
}
