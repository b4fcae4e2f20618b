import { describe, expect, it } from 'vitest';
import { Gradient2Limit } from '../../../src/pool/limit.js';

const settings = { initial: 20, min: 4, max: 100, tolerance: 2, smoothing: 0.2, longWindow: 600 };

/** `n` units, each sent with `inflight` in flight (default: the limit full), answered after `rtt` ms. */
function run(l: Gradient2Limit, n: number, rtt: number, inflight?: number): void {
  for (let i = 0; i < n; i++) {
    l.started();
    l.finished(rtt, inflight ?? l.limit);
  }
}

describe('Gradient2Limit', () => {
  it('grows while latency stays near its long-term average, up to max', () => {
    const l = new Gradient2Limit(settings);
    run(l, 50, 1);
    expect(l.limit).toBeGreaterThan(20);
    run(l, 500, 1);
    expect(l.limit).toBe(100);
  });

  it('does not grow on units that never filled the limit', () => {
    const l = new Gradient2Limit(settings);
    run(l, 200, 1, 2);
    expect(l.limit).toBe(20);
  });

  it('shrinks when pipelining makes units much slower than usual, not below min', () => {
    const l = new Gradient2Limit(settings);
    run(l, 300, 1);
    const before = l.limit;
    run(l, 10, 10);
    expect(l.limit).toBeLessThan(before * 0.7);
    const small = new Gradient2Limit({ ...settings, initial: 6 });
    run(small, 20, 1);
    run(small, 50, 100);
    expect(small.limit).toBe(4);
  });

  it('admits while fewer units than the limit are in flight; dropped units free their place', () => {
    const l = new Gradient2Limit({ ...settings, initial: 2 });
    l.started();
    expect(l.admits).toBe(true);
    l.started();
    expect(l.admits).toBe(false);
    l.dropped();
    expect(l.admits).toBe(true);
    l.dropped();
    l.dropped();
    expect(l.inflight).toBe(0);
  });
});
