import { describe, it, expect } from 'vitest';
import { PendingRequests, Request, SKIP, SYNTHETIC, SIMPLE, type RequestKind } from '../../../src/pool/pending.js';

const KINDS: RequestKind[] = [Request.Parse, Request.Bind, Request.Describe, Request.Execute, Request.Close, Request.Sync];
const FLAG_SETS = [0, SKIP, SYNTHETIC, SIMPLE, SKIP | SIMPLE, SKIP | SYNTHETIC];

interface Entry {
  kind: number;
  flags: number;
  name: string | undefined;
}

function drain(q: PendingRequests): Entry[] {
  const out: Entry[] = [];
  while (q.length > 0) {
    out.push({ kind: q.headKind(), flags: q.headFlags(), name: q.headName() });
    q.shift();
  }
  return out;
}

const entry = (i: number): Entry => ({ kind: KINDS[i % KINDS.length], flags: FLAG_SETS[i % FLAG_SETS.length], name: i % 3 === 0 ? `stmt${i}` : undefined });

describe('PendingRequests', () => {
  it('is empty at first', () => {
    const q = new PendingRequests();
    expect(q.length).toBe(0);
    expect(q.headKind()).toBe(0);
    expect(q.headFlags()).toBe(0);
    expect(q.headName()).toBeUndefined();
    expect(q.countKind(Request.Sync)).toBe(0);
    q.shift(); // no-op on empty
    expect(q.length).toBe(0);
  });

  it('flag constants do not overlap the kinds', () => {
    for (const k of KINDS) for (const f of [SKIP, SYNTHETIC, SIMPLE]) expect(k & f).toBe(0);
    expect(SKIP & SYNTHETIC).toBe(0);
    expect(SKIP & SIMPLE).toBe(0);
    expect(SYNTHETIC & SIMPLE).toBe(0);
  });

  it('shifts in push order with flags and names riding along', () => {
    const q = new PendingRequests();
    q.push(Request.Parse, SKIP, 'pgt_a');
    q.push(Request.Bind);
    q.push(Request.Execute);
    q.push(Request.Sync, SKIP | SIMPLE);
    q.push(Request.Close, SYNTHETIC);
    expect(q.length).toBe(5);
    expect(q.headKind()).toBe(Request.Parse);
    expect(q.headFlags()).toBe(SKIP);
    expect(q.headName()).toBe('pgt_a');
    expect(drain(q)).toEqual([
      { kind: Request.Parse, flags: SKIP, name: 'pgt_a' },
      { kind: Request.Bind, flags: 0, name: undefined },
      { kind: Request.Execute, flags: 0, name: undefined },
      { kind: Request.Sync, flags: SKIP | SIMPLE, name: undefined },
      { kind: Request.Close, flags: SYNTHETIC, name: undefined },
    ]);
    expect(q.headKind()).toBe(0);
  });

  it('does not leak a name into a later entry reusing the slot', () => {
    const q = new PendingRequests();
    for (let round = 0; round < 3; round++) {
      for (let i = 0; i < 64; i++) q.push(Request.Parse, 0, `r${round}_${i}`);
      drain(q);
    }
    for (let i = 0; i < 64; i++) q.push(Request.Bind);
    expect(drain(q).every((e) => e.name === undefined)).toBe(true);
  });

  it.each([65, 128, 129, 1000])('keeps order when growing past 64 to %i entries', (n) => {
    const q = new PendingRequests();
    for (let i = 0; i < n; i++) {
      const e = entry(i);
      q.push(e.kind as RequestKind, e.flags, e.name);
    }
    expect(q.length).toBe(n);
    expect(drain(q)).toEqual(Array.from({ length: n }, (_, i) => entry(i)));
  });

  it('keeps order when growing while the ring has wrapped around', () => {
    for (const offset of [1, 17, 40, 63]) {
      const q = new PendingRequests();
      const expected: Entry[] = [];
      let next = 0;
      const push = (): void => {
        const e = entry(next++);
        q.push(e.kind as RequestKind, e.flags, e.name);
        expected.push(e);
      };
      const shift = (): void => {
        expect({ kind: q.headKind(), flags: q.headFlags(), name: q.headName() }).toEqual(expected.shift());
        q.shift();
      };
      // Move head to `offset`, fill to capacity so the ring wraps, then grow twice.
      for (let i = 0; i < offset; i++) push();
      for (let i = 0; i < offset; i++) shift();
      for (let i = 0; i < 64; i++) push();
      expect(q.length).toBe(64);
      for (let i = 0; i < 10; i++) shift();
      for (let i = 0; i < 200; i++) push();
      expect(q.length).toBe(254);
      expect(drain(q)).toEqual(expected);
    }
  });

  it('stays consistent under an interleaved push/shift workload', () => {
    const q = new PendingRequests();
    const model: Entry[] = [];
    let seed = 12345;
    const rand = (): number => {
      seed = (Math.imul(seed, 1103515245) + 12345) >>> 0;
      return seed / 4294967296;
    };
    let next = 0;
    for (let step = 0; step < 5000; step++) {
      if (rand() < (step < 2500 ? 0.6 : 0.4)) {
        const e = entry(next++);
        q.push(e.kind as RequestKind, e.flags, e.name);
        model.push(e);
      } else {
        q.shift();
        model.shift();
      }
      expect(q.length).toBe(model.length);
      const head = model[0];
      expect(q.headKind()).toBe(head?.kind ?? 0);
      expect(q.headFlags()).toBe(head?.flags ?? 0);
      expect(q.headName()).toBe(head?.name);
      if (step % 97 === 0) {
        for (const k of KINDS) expect(q.countKind(k)).toBe(model.filter((e) => e.kind === k).length);
      }
    }
    expect(drain(q)).toEqual(model);
  });

  it('countKind counts only entries of that kind, ignoring flags, across a wrap', () => {
    const q = new PendingRequests();
    for (let i = 0; i < 60; i++) q.push(Request.Execute);
    for (let i = 0; i < 60; i++) q.shift();
    // head is at 60: these wrap around the end of the 64-slot ring.
    q.push(Request.Sync);
    q.push(Request.Parse, SKIP, 'x');
    q.push(Request.Sync, SKIP | SIMPLE);
    q.push(Request.Bind);
    q.push(Request.Sync, SYNTHETIC);
    q.push(Request.Execute);
    q.push(Request.Sync);
    expect(q.countKind(Request.Sync)).toBe(4);
    expect(q.countKind(Request.Parse)).toBe(1);
    expect(q.countKind(Request.Close)).toBe(0);
    q.shift();
    expect(q.countKind(Request.Sync)).toBe(3);
  });
});

describe('PendingRequests: what still waits for a Sync', () => {
  it('awaits a Sync after extended-protocol requests, not after a simple Query, and not after a proxy answer', () => {
    const q = new PendingRequests();
    q.push(Request.Sync, SIMPLE);
    expect(q.awaitingSync).toBe(false);
    q.push(Request.Parse, SYNTHETIC);
    expect(q.awaitingSync).toBe(false);
    q.push(Request.Bind);
    q.push(Request.Execute);
    expect(q.awaitingSync).toBe(true);
    // A Query after them ends them only when none failed: until a Sync, they count as unsynced.
    q.push(Request.Sync, SIMPLE);
    expect(q.awaitingSync).toBe(true);
    q.push(Request.Sync);
    expect(q.awaitingSync).toBe(false);
  });

  it('records nothing the server ignores after a failed extended-protocol request, up to and not including the Sync', () => {
    const q = new PendingRequests();
    q.ignoreUntilSync();
    expect(q.push(Request.Sync, SIMPLE)).toBe(false);
    expect(q.push(Request.Sync, SIMPLE | SKIP)).toBe(false);
    expect(q.push(Request.Parse, 0, 'p')).toBe(false);
    expect(q.push(Request.Close, SYNTHETIC)).toBe(false);
    expect(q.push(Request.Execute)).toBe(false);
    expect(q.length).toBe(0);
    expect(q.push(Request.Sync)).toBe(true);
    expect(q.push(Request.Sync, SIMPLE)).toBe(true);
    expect(drain(q)).toEqual([
      { kind: Request.Sync, flags: 0, name: undefined },
      { kind: Request.Sync, flags: SIMPLE, name: undefined },
    ]);
  });
});

describe('PendingRequests.standing (may a cancel go to a shared connection)', () => {
  const a = { name: 'a' };
  const b = { name: 'b' };
  function queue(owners: object[]): PendingRequests {
    const q = new PendingRequests();
    for (const o of owners) {
      q.currentOwner = o;
      q.push(Request.Sync, SIMPLE);
    }
    return q;
  }

  it('none, alone, others ahead, others behind', () => {
    expect(queue([]).standing(a)).toBe('none');
    expect(queue([b, b]).standing(a)).toBe('none');
    expect(queue([a, a]).standing(a)).toBe('alone');
    expect(queue([b, a, a]).standing(a)).toBe('others-ahead');
    expect(queue([a, b]).standing(a)).toBe('others-behind');
    expect(queue([b, a, b, a]).standing(a)).toBe('others-behind');
  });

  it('follows the ring as it wraps and grows', () => {
    const q = queue(Array.from({ length: 60 }, () => b));
    for (let i = 0; i < 58; i++) q.shift();
    q.currentOwner = a;
    for (let i = 0; i < 100; i++) q.push(Request.Sync, SIMPLE);
    expect(q.standing(a)).toBe('others-ahead');
    q.shift();
    q.shift();
    expect(q.standing(a)).toBe('alone');
    q.currentOwner = b;
    q.push(Request.Sync, SIMPLE);
    expect(q.standing(a)).toBe('others-behind');
  });
});
