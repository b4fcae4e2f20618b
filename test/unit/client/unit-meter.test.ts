import { describe, expect, it } from 'vitest';
import { UnitMeter, type MeteredClient } from '../../../src/client/unit-meter.js';
import { UnitClassifier } from '../../../src/sql/classify.js';
import { Histogram } from '../../../src/stats/histogram.js';
import { TenantUsage } from '../../../src/stats/usage.js';

function client(): MeteredClient & { backends: Map<string, Histogram> } {
  const backends = new Map<string, Histogram>();
  return {
    usage: new TenantUsage('acme'),
    rowsReceived: 0,
    backends,
    backendLatency(name: string) {
      if (!backends.has(name)) backends.set(name, new Histogram());
      return backends.get(name)!;
    },
  };
}

const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms));

describe('UnitMeter', () => {
  it('has no elapsed time while no unit runs (a client leaving between units reports 0 ms, not the time since boot)', () => {
    const meter = new UnitMeter(client(), null);
    expect(meter.running).toBe(false);
    expect(meter.elapsed()).toBe(0);
  });

  it('times a unit, counts it with its rows against the client and its backend, and teaches the classifier its shape', async () => {
    const c = client();
    const classifier = await UnitClassifier.create();
    const meter = new UnitMeter(c, classifier);
    const shape = classifier.stats('select 1', 'select 1');
    meter.shape = shape;
    c.rowsReceived = 5;
    meter.start();
    expect(meter.running).toBe(true);
    await sleep(20);
    c.rowsReceived = 8;
    expect(meter.elapsed()).toBeGreaterThanOrEqual(15);
    const ms = meter.end('main');
    expect(ms).toBeGreaterThanOrEqual(15);
    expect(meter.running).toBe(false);
    expect(meter.elapsed()).toBe(0);
    expect(c.usage.transactions).toBe(1);
    expect(c.usage.rows).toBe(3);
    expect(c.usage.busySeconds).toBeCloseTo(ms / 1000, 6);
    expect(c.usage.latency.count).toBe(1);
    expect(c.backends.get('main')?.count).toBe(1);
    expect(shape.runs).toBe(1);
    expect(shape.latencyMs).toBe(ms);
    expect(meter.shape).toBeNull();

    meter.start();
    meter.end('main');
    expect(shape.runs).toBe(1);
    expect(c.usage.transactions).toBe(2);
  });
});
