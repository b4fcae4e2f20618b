import { describe, expect, it } from 'vitest';
import { configSchema } from '../../../src/config/schema.js';
import { lsnBytes } from '../../../src/routing/health.js';
import { ReplicaSet } from '../../../src/routing/replicas.js';

const routing = (over: Record<string, unknown> = {}) => {
  const cfg = configSchema.parse({ backends: { main: { host: 'h', replicas: [{ host: 'a' }, { host: 'b' }, { host: 'c' }], readRouting: over } } });
  const b = cfg.backends.main;
  if ('embedded' in b) throw new Error('unexpected');
  return b;
};
const make = (over: Record<string, unknown> = {}, random = Math.random) => {
  const b = routing(over);
  return new ReplicaSet('main', b.replicas, b.readRouting, random);
};
const ok = (lagBytes = 0, lagSeconds = 0) => ({ ok: true as const, inRecovery: true, lagBytes, lagSeconds });

describe('ReplicaSet', () => {
  it('names replicas host:port unless named, and picks only eligible ones', () => {
    const set = make();
    expect(set.replicas.map((r) => r.name)).toEqual(['a:5432', 'b:5432', 'c:5432']);
    const [a, b, c] = set.replicas;
    set.checked(a, { ok: false, error: 'connection refused' });
    set.checked(b, { ok: true, inRecovery: false, lagBytes: 0, lagSeconds: 0 });
    expect(b.reason).toMatch(/not in recovery/);
    for (let i = 0; i < 20; i++) expect(set.pick()).toBe(c);
    set.connectFailed(c);
    expect(set.pick()).toBeNull();
    set.checked(c, ok());
    expect(set.pick()).toBe(c);
  });

  it('skips replicas beyond the byte lag, and beyond the time lag only while behind', () => {
    const set = make({ maxLagBytes: 1000, maxLagTime: 5000 });
    const [a] = set.replicas;
    set.checked(a, ok(1001));
    expect(a.healthy).toBe(false);
    expect(a.reason).toMatch(/1001 bytes behind/);
    set.checked(a, ok(10, 6));
    expect(a.healthy).toBe(false);
    set.checked(a, ok(0, 600));
    expect(a.healthy).toBe(true);
  });

  it('peak-EWMA: a slow sample counts at once, fast ones pull it down over τ = 10 s', () => {
    const set = make();
    const [a] = set.replicas;
    set.started(a);
    set.finished(a, 1, false, 1_000);
    set.started(a);
    set.finished(a, 50, false, 1_001);
    expect(a.latencyMs).toBe(50);
    set.started(a);
    set.finished(a, 1, false, 11_001);
    // w = e^-1: 50 · 0.368 + 1 · 0.632
    expect(a.latencyMs).toBeCloseTo(50 * Math.exp(-1) + 1 - Math.exp(-1), 6);
    // Unsampled, the cost decays too, so an idle slow replica is tried again.
    expect(set.cost(a, 21_001)).toBeCloseTo(a.latencyMs * Math.exp(-1), 6);
  });

  it('P2C takes the cheaper of two random replicas: latency × (in flight + 1)', () => {
    let n = 0;
    const seq = [0, 0.5, 0.1, 0.9]; // picks (a, c) then (a, c)
    const set = make({}, () => seq[n++ % seq.length]);
    const [a, , c] = set.replicas;
    set.started(a);
    set.finished(a, 10, false, Date.now());
    set.started(c);
    set.finished(c, 2, false, Date.now());
    expect(set.pick()).toBe(c);
    for (let i = 0; i < 9; i++) set.started(c);
    expect(set.pick()).toBe(a);
  });

  it('ejects an outlier by failure percentage for base × ejections, never more than maxPercent', () => {
    const set = make({ ejection: { minRequests: 4, failurePercent: 50, baseTime: 1000, maxTime: 2500, maxPercent: 40 } });
    const [a, b] = set.replicas;
    for (let i = 0; i < 4; i++) {
      set.started(a);
      set.finished(a, 1, i < 2, 0);
      set.started(b);
      set.finished(b, 1, true, 0);
    }
    expect(set.sweep(10_000).map((r) => r.name)).toEqual(['a:5432']);
    expect(a.ejectedUntil).toBe(11_000);
    expect(b.ejectedUntil).toBe(0); // a third (33%) ejected already; b would make it 67% > 40%
    expect(set.eligible(a, 10_500)).toBe(false);
    expect(set.eligible(a, 11_000)).toBe(false); // broken by its failures until a health check passes
    set.checked(a, ok());
    expect(set.eligible(a, 11_000)).toBe(true);
    for (const ejectAt of [20_000, 30_000]) {
      for (let i = 0; i < 4; i++) set.connectFailed(a);
      set.sweep(ejectAt);
    }
    expect(a.ejections).toBe(3);
    expect(a.ejectedUntil).toBe(30_000 + 2500); // 3 × 1000 capped at maxTime
  });

  it('reads LSNs as byte positions', () => {
    expect(lsnBytes('0/3000148')).toBe(0x3000148);
    expect(lsnBytes('1/0') - lsnBytes('0/FFFFFFFF')).toBe(1);
    expect(() => lsnBytes('nonsense')).toThrow(/not an LSN/);
  });
});
