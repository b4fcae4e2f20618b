import pino from 'pino';
import { afterEach, describe, expect, it, vi } from 'vitest';
import { Pool } from '../../../src/pool/pool.js';

function pool(): Pool {
  const endpoint = { host: '127.0.0.1', port: 1, user: 'u', database: 'd', tls: { mode: 'disable' as const }, connectTimeout: 1000 };
  return new Pool('main/d/u', endpoint, { size: 4, queueTimeout: 1000, idleTimeout: 60_000, mode: 'transaction', sharedConnections: 2 }, pino({ level: 'silent' }));
}

/** Fills the limit: every slot in flight. */
function fill(p: Pool): void {
  while (p.sharedLimit.admits) p.sharedLimit.started();
}

afterEach(() => {
  vi.useRealTimers();
});

describe('Pool.waitForShared: units over the pipelining limit wait for a slot', () => {
  it('admits waiting units in order as slots free up, one per slot', () => {
    const p = pool();
    fill(p);
    const admitted: string[] = [];
    const admit = (name: string) => () => {
      admitted.push(name);
      p.sharedLimit.started(); // the admitted unit takes its slot, as sendShared does
    };
    p.waitForShared(admit('a'), () => admitted.push('gave up a'), 1000);
    p.waitForShared(admit('b'), () => admitted.push('gave up b'), 1000);
    p.waitForShared(admit('c'), () => admitted.push('gave up c'), 1000);
    expect(admitted).toEqual([]);
    p.sharedDropped();
    expect(admitted).toEqual(['a']);
    p.sharedDropped();
    expect(admitted).toEqual(['a', 'b']);
    // An answered unit frees its slot too (and may raise the limit, admitting more).
    p.sharedFinished(1, p.sharedLimit.inflight);
    expect(admitted).toEqual(['a', 'b', 'c']);
    expect(p.sharedLimit.inflight).toBeLessThanOrEqual(p.sharedLimit.limit);
  });

  it('gives up after maxWaitMs, and a cancelled wait is neither admitted nor given up', () => {
    vi.useFakeTimers();
    const p = pool();
    fill(p);
    const events: string[] = [];
    const cancel = p.waitForShared(() => events.push('admitted x'), () => events.push('gave up x'), 50);
    p.waitForShared(() => events.push('admitted y'), () => events.push('gave up y'), 50);
    cancel();
    vi.advanceTimersByTime(49);
    expect(events).toEqual([]);
    vi.advanceTimersByTime(1);
    expect(events).toEqual(['gave up y']);
    p.sharedFinished(1, p.sharedLimit.inflight);
    expect(events).toEqual(['gave up y']);
  });
});
