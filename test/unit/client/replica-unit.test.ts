import { describe, expect, it } from 'vitest';
import { ReplicaUnit } from '../../../src/client/replica-unit.js';
import { configSchema } from '../../../src/config/schema.js';
import { Frontend, TxStatus } from '../../../src/protocol/codes.js';
import { ReplicaSet } from '../../../src/routing/replicas.js';
import type { ReadRouter, ReadTarget } from '../../../src/routing/router.js';

function target(autocommit: boolean): ReadTarget {
  const cfg = configSchema.parse({ backends: { main: { host: 'h', replicas: [{ host: 'a' }] } } });
  const b = cfg.backends.main;
  if ('embedded' in b) throw new Error('unexpected');
  const set = new ReplicaSet('main', b.replicas, b.readRouting);
  return { router: { set } as unknown as ReadRouter, state: set.replicas[0], autocommit, length: 1 };
}

describe('ReplicaUnit', () => {
  it('holds nothing on the primary', () => {
    const unit = new ReplicaUnit();
    unit.sent(Frontend.Query);
    expect(unit.active).toBe(false);
    expect(unit.holdsMessages).toBe(false);
    expect(unit.done(TxStatus.Idle)).toBe(false);
  });

  it('holds autocommit reads batch by batch, and is done with them at their answer', () => {
    const unit = new ReplicaUnit();
    unit.use(target(true));
    expect(unit.holdsMessages).toBe(true);
    expect(unit.done(TxStatus.Idle)).toBe(true);
  });

  it('lets a transaction\'s messages through until a request that ends in ReadyForQuery, then holds them until its answer', () => {
    const unit = new ReplicaUnit();
    unit.use(target(false));
    for (const type of [Frontend.Parse, Frontend.Bind, Frontend.Describe, Frontend.Execute, Frontend.Flush]) {
      unit.sent(type);
      expect(unit.holdsMessages).toBe(false);
    }
    unit.sent(Frontend.Sync);
    expect(unit.holdsMessages).toBe(true);
    unit.answered();
    expect(unit.holdsMessages).toBe(false);
    unit.sent(Frontend.Query);
    expect(unit.holdsMessages).toBe(true);
    // Still in the transaction: the replica stays; at its end ('I') what follows is routed anew.
    expect(unit.done(TxStatus.InTransaction)).toBe(false);
    expect(unit.done(TxStatus.Failed)).toBe(false);
    expect(unit.done(TxStatus.Idle)).toBe(true);
  });

  it('starts afresh on a new replica: a request left unanswered on the last one holds nothing', () => {
    const unit = new ReplicaUnit();
    unit.use(target(false));
    unit.sent(Frontend.Query);
    unit.use(target(false));
    expect(unit.holdsMessages).toBe(false);
  });

  it('counts each unit in flight once, ended or failed', () => {
    const unit = new ReplicaUnit();
    const t = target(false);
    unit.use(t);
    unit.unitStarted();
    unit.unitStarted();
    expect(t.state.inflight).toBe(2);
    unit.unitEnded(5, false);
    expect(t.state.inflight).toBe(1);
    expect(t.state.latencyMs).toBe(5);
    unit.unitEnded(1, true);
    expect(t.state.inflight).toBe(0);
    expect(t.state.failures).toBe(1);
  });
});
