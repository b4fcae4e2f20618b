import { describe, expect, it } from 'vitest';
import { requestConnection } from '../../../src/client/connection-request.js';
import type { AcquireCallback, Pool } from '../../../src/pool/pool.js';
import type { ServerConnection } from '../../../src/pool/server-connection.js';

/** A pool that answers when told to, and records what comes back to it. */
function pool(size = 10) {
  const waiting: AcquireCallback[] = [];
  const released: unknown[] = [];
  const drained: unknown[] = [];
  const asked: { tenant?: string; limit: number }[] = [];
  let cancels = 0;
  let atOnce: ServerConnection | null = null;
  const p = {
    settings: { size },
    acquire(cb: AcquireCallback, tenant: string | undefined, limit: number) {
      asked.push({ tenant, limit });
      if (atOnce !== null) cb(null, atOnce);
      else waiting.push(cb);
      return () => cancels++;
    },
    acquireShared(cb: AcquireCallback) {
      waiting.push(cb);
      return () => cancels++;
    },
    release: (c: unknown) => released.push(c),
    sharedDrained: (c: unknown) => drained.push(c),
  };
  return {
    pool: p as unknown as Pool,
    answer: (conn: object) => waiting.shift()!(null, conn as ServerConnection),
    answerAtOnce: (conn: object) => (atOnce = conn as ServerConnection),
    released,
    drained,
    asked,
    get cancels() {
      return cancels;
    },
  };
}

function client(poolShare?: number) {
  const failed: unknown[] = [];
  const tenant = poolShare === undefined ? null : { tenant: 'acme', placement: { limits: { poolShare } } };
  return { client: { tenant, failOn: (e: unknown) => failed.push(e) } as unknown as Parameters<typeof requestConnection>[0], failed };
}

describe('requestConnection', () => {
  it('returns no way to withdraw when the pool answers at once, and hands the connection over', () => {
    const p = pool();
    const conn = { id: 1 };
    p.answerAtOnce(conn);
    const got: unknown[] = [];
    expect(requestConnection(client().client, p.pool, false, (_e, c) => got.push(c))).toBeNull();
    expect(got).toEqual([conn]);
  });

  it('hands over a connection that comes later', () => {
    const p = pool();
    const got: unknown[] = [];
    expect(requestConnection(client().client, p.pool, false, (_e, c) => got.push(c))).toBeTypeOf('function');
    p.answer({ id: 2 });
    expect(got).toEqual([{ id: 2 }]);
  });

  it('gives back a connection that arrives after the request was withdrawn, to where it came from', () => {
    const p = pool();
    const got: unknown[] = [];
    requestConnection(client().client, p.pool, false, (_e, c) => got.push(c))!();
    requestConnection(client().client, p.pool, true, (_e, c) => got.push(c))!();
    expect(p.cancels).toBe(2);
    p.answer({ id: 'own' });
    p.answer({ id: 'shared' });
    expect(got).toEqual([]);
    expect(p.released).toEqual([{ id: 'own' }]);
    expect(p.drained).toEqual([{ id: 'shared' }]);
  });

  it('fails the client, not the pool that called back, with what its callback threw', () => {
    const p = pool();
    const c = client();
    requestConnection(c.client, p.pool, false, () => {
      throw new Error('boom');
    });
    expect(() => p.answer({ id: 3 })).not.toThrow();
    expect((c.failed[0] as Error).message).toBe('boom');
  });

  it("asks within the tenant's share of the pool", () => {
    const p = pool(10);
    requestConnection(client(0.25).client, p.pool, false, () => undefined);
    requestConnection(client(0.01).client, p.pool, false, () => undefined);
    requestConnection(client().client, p.pool, false, () => undefined);
    expect(p.asked).toEqual([
      { tenant: 'acme', limit: 2 },
      { tenant: 'acme', limit: 1 },
      { tenant: undefined, limit: Infinity },
    ]);
  });
});

