import { describe, it, expect } from 'vitest';
import { Framer, typeSet, type FrameHandler } from '../../../src/protocol/framer.js';
import { msg } from '../../../src/protocol/messages.js';
import { PgError } from '../../../src/protocol/sqlstate.js';
import { seededRandom } from '../../harness/random.js';

const T = (c: string): number => c.charCodeAt(0);
const THRESHOLD = 64;

type Event =
  | { kind: 'message'; type: number; buf: Buffer; start: number; end: number }
  | { kind: 'largeStart'; type: number; total: number; head: Buffer }
  | { kind: 'largePart'; buf: Buffer; start: number; end: number; last: boolean };

/** Records events keeping the views it is given (no copies), as the FrameHandler contract allows. */
class Recorder implements FrameHandler {
  events: Event[] = [];
  message(type: number, buf: Buffer, start: number, end: number): void {
    this.events.push({ kind: 'message', type, buf, start, end });
  }
  largeStart(type: number, totalLength: number, head: Buffer): void {
    this.events.push({ kind: 'largeStart', type, total: totalLength, head });
  }
  largePart(buf: Buffer, start: number, end: number, last: boolean): void {
    this.events.push({ kind: 'largePart', buf, start, end, last });
  }
}

interface Logical {
  type: number;
  bytes: Buffer;
  large: boolean;
}

/**
 * Reassembles the recorded events into whole messages, checking the large-message invariants on the way:
 * head ≥ threshold with the header included, parts only inside a large message, `last` exactly on the final part.
 */
function reassemble(events: Event[], threshold: number): Logical[] {
  const out: Logical[] = [];
  let large: { type: number; total: number; parts: Buffer[]; size: number } | null = null;
  for (const e of events) {
    if (e.kind === 'message') {
      expect(large, 'whole message inside a large one').toBeNull();
      const bytes = e.buf.subarray(e.start, e.end);
      expect(bytes[0]).toBe(e.type);
      expect(bytes.readInt32BE(1) + 1).toBe(bytes.length);
      out.push({ type: e.type, bytes, large: false });
    } else if (e.kind === 'largeStart') {
      expect(large, 'largeStart inside a large message').toBeNull();
      expect(e.head.length).toBeGreaterThanOrEqual(threshold);
      expect(e.head.length).toBeLessThan(e.total);
      expect(e.head[0]).toBe(e.type);
      expect(e.head.readInt32BE(1) + 1).toBe(e.total);
      large = { type: e.type, total: e.total, parts: [e.head], size: e.head.length };
    } else {
      // Plain checks here: this path runs once per byte in the byte-at-a-time tests.
      if (large === null) throw new Error('largePart outside a large message');
      const l = large;
      if (e.end <= e.start) throw new Error(`empty largePart [${e.start}, ${e.end})`);
      l.parts.push(e.buf.subarray(e.start, e.end));
      l.size += e.end - e.start;
      if (l.size > l.total) throw new Error(`parts overrun the message: ${l.size} > ${l.total}`);
      if (e.last !== (l.size === l.total)) throw new Error(`last=${e.last} at ${l.size} of ${l.total} bytes`);
      if (e.last) {
        out.push({ type: l.type, bytes: Buffer.concat(l.parts), large: true });
        large = null;
      }
    }
  }
  expect(large, 'stream ended inside a large message').toBeNull();
  return out;
}

const filled = (n: number, seed: number): Buffer => {
  const r = seededRandom(seed);
  const b = Buffer.allocUnsafe(n);
  for (let i = 0; i < n; i++) b[i] = Math.floor(r() * 256);
  return b;
};

// 'D' and 'd' are streamable; 'T' is not.
const STREAMABLE = typeSet(T('D'), T('d'));

const MESSAGES: Buffer[] = [
  msg(T('1')).done(), // empty body: 5 bytes
  msg(T('T')).i16(1).str('col').bytes(filled(10, 1)).done(),
  msg(T('D')).i16(1).i32(3).bytes(Buffer.from('abc')).done(),
  msg(T('D')).bytes(filled(300, 2)).done(), // large streamable
  msg(T('C')).str('SELECT 1').done(),
  msg(T('T')).bytes(filled(200, 3)).done(), // large, not streamable: always whole
  msg(T('d')).bytes(filled(THRESHOLD - 5, 4)).done(), // exactly the threshold: not large
  msg(T('d')).bytes(filled(THRESHOLD - 4, 5)).done(), // threshold + 1: large
  msg(T('D')).bytes(filled(1000, 6)).done(),
  msg(T('D')).bytes(filled(150, 7)).done(), // two large ones back to back
  msg(T('Z')).byte(T('I')).done(),
];
const STREAM = Buffer.concat(MESSAGES);

function feed(chunks: Buffer[], threshold = THRESHOLD): Logical[] {
  const rec = new Recorder();
  const framer = new Framer(rec, STREAMABLE, threshold);
  for (const c of chunks) framer.push(c);
  return reassemble(rec.events, threshold);
}

function expectSameMessages(got: Logical[]): void {
  expect(got.map((m) => m.type)).toEqual(MESSAGES.map((m) => m[0]));
  for (let i = 0; i < MESSAGES.length; i++) {
    expect(got[i].bytes.equals(MESSAGES[i]), `message ${i}`).toBe(true);
    const total = MESSAGES[i].length;
    // Only streamable messages above the threshold may be split; everything else comes whole.
    if (got[i].large) {
      expect(STREAMABLE[MESSAGES[i][0]]).toBe(1);
      expect(total).toBeGreaterThan(THRESHOLD);
    }
  }
}

/** Splits `buf` into fresh (copied) chunks at the given cut points. */
function cut(buf: Buffer, points: number[]): Buffer[] {
  const chunks: Buffer[] = [];
  let prev = 0;
  for (const p of [...points, buf.length]) {
    chunks.push(Buffer.from(buf.subarray(prev, p)));
    prev = p;
  }
  return chunks;
}

describe('typeSet', () => {
  it('marks exactly the given types', () => {
    const s = typeSet(T('D'), T('d'), 0, 255);
    expect(s).toBeInstanceOf(Uint8Array);
    expect(s.length).toBe(256);
    const marked = [...s.keys()].filter((i) => s[i] === 1);
    expect(marked).toEqual([0, T('D'), T('d'), 255].sort((a, b) => a - b));
    expect(s.reduce((a, b) => a + b, 0)).toBe(4);
    expect(typeSet().every((v) => v === 0)).toBe(true);
  });
});

describe('Framer', () => {
  it('delivers a stream pushed as one chunk as whole messages, in order', () => {
    const got = feed([Buffer.from(STREAM)]);
    expectSameMessages(got);
    expect(got.every((m) => !m.large)).toBe(true);
  });

  it('gives views into the pushed chunk for messages that arrive whole', () => {
    const rec = new Recorder();
    const chunk = Buffer.concat([MESSAGES[0], MESSAGES[2]]);
    new Framer(rec, STREAMABLE, THRESHOLD).push(chunk);
    expect(rec.events).toEqual([
      { kind: 'message', type: T('1'), buf: chunk, start: 0, end: 5 },
      { kind: 'message', type: T('D'), buf: chunk, start: 5, end: 5 + MESSAGES[2].length },
    ]);
  });

  it('handles a split at every single byte boundary', () => {
    for (let p = 1; p < STREAM.length; p++) {
      expectSameMessages(feed(cut(STREAM, [p])));
    }
  });

  it('handles every pair of split points across the small messages and the header of a large one', () => {
    const limit = MESSAGES[0].length + MESSAGES[1].length + MESSAGES[2].length + 12;
    for (let p = 1; p < limit; p++) {
      for (let q = p + 1; q <= limit; q++) expectSameMessages(feed(cut(STREAM, [p, q])));
    }
  });

  it('handles the stream fed one byte at a time', () => {
    const chunks = [...STREAM].map((b) => Buffer.from([b]));
    const got = feed(chunks);
    expectSameMessages(got);
    // One byte at a time, every message above the threshold of a streamable type is streamed.
    for (let i = 0; i < MESSAGES.length; i++) {
      const streamed = STREAMABLE[MESSAGES[i][0]] === 1 && MESSAGES[i].length > THRESHOLD;
      expect(got[i].large, `message ${i}`).toBe(streamed);
    }
  });

  it('streams a large message fed one byte at a time as a head of exactly the threshold plus 1-byte parts', () => {
    const big = MESSAGES[3];
    const rec = new Recorder();
    const framer = new Framer(rec, STREAMABLE, THRESHOLD);
    for (const b of big) framer.push(Buffer.from([b]));
    expect(rec.events.length).toBe(1 + big.length - THRESHOLD);
    const [start, ...parts] = rec.events;
    expect(start).toMatchObject({ kind: 'largeStart', type: T('D'), total: big.length });
    expect((start as { head: Buffer }).head.equals(big.subarray(0, THRESHOLD))).toBe(true);
    parts.forEach((p, i) => {
      expect(p.kind).toBe('largePart');
      expect((p as { last: boolean }).last).toBe(i === parts.length - 1);
    });
  });

  it('handles random chunk sizes (fixed seeds)', () => {
    for (let seed = 1; seed <= 300; seed++) {
      const r = seededRandom(seed);
      const maxChunk = 1 + Math.floor(r() * (seed % 3 === 0 ? 8 : 200));
      const points: number[] = [];
      let p = 0;
      for (;;) {
        p += 1 + Math.floor(r() * maxChunk);
        if (p >= STREAM.length) break;
        points.push(p);
      }
      expectSameMessages(feed(cut(STREAM, points)));
    }
  });

  it('reassembles a header split across three chunks', () => {
    const m = MESSAGES[4];
    const got = feed([m.subarray(0, 1), m.subarray(1, 3), m.subarray(3, 5), m.subarray(5)].map((b) => Buffer.from(b)));
    expect(got).toHaveLength(1);
    expect(got[0].bytes.equals(m)).toBe(true);
    expect(got[0].large).toBe(false);
  });

  it('streams a large message whose head arrives below the threshold, then delivers the next message of the same chunk', () => {
    const big = MESSAGES[3];
    const small = MESSAGES[10];
    const rec = new Recorder();
    const framer = new Framer(rec, STREAMABLE, THRESHOLD);
    framer.push(Buffer.from(big.subarray(0, 10)));
    expect(rec.events).toEqual([]);
    framer.push(Buffer.concat([big.subarray(10), small]));
    expect(rec.events.map((e) => e.kind)).toEqual(['largeStart', 'largePart', 'message']);
    const [start, part, message] = rec.events as [Extract<Event, { kind: 'largeStart' }>, Extract<Event, { kind: 'largePart' }>, Extract<Event, { kind: 'message' }>];
    expect(start.type).toBe(T('D'));
    expect(start.total).toBe(big.length);
    expect(start.head.length).toBe(THRESHOLD);
    expect(start.head.equals(big.subarray(0, THRESHOLD))).toBe(true);
    expect(part.last).toBe(true);
    expect(Buffer.concat([start.head, part.buf.subarray(part.start, part.end)]).equals(big)).toBe(true);
    expect(message.type).toBe(T('Z'));
    expect(message.buf.subarray(message.start, message.end).equals(small)).toBe(true);
  });

  it('streams a large message whose first chunk already exceeds the threshold', () => {
    const big = MESSAGES[8]; // 1005 bytes
    const small = MESSAGES[4];
    const rec = new Recorder();
    const framer = new Framer(rec, STREAMABLE, THRESHOLD);
    framer.push(Buffer.concat([small, big.subarray(0, 100)]));
    framer.push(Buffer.from(big.subarray(100, 500)));
    framer.push(Buffer.concat([big.subarray(500), small, small.subarray(0, 3)]));
    framer.push(Buffer.from(small.subarray(3)));
    expect(rec.events.map((e) => e.kind)).toEqual(['message', 'largeStart', 'largePart', 'largePart', 'message', 'message']);
    const start = rec.events[1] as Extract<Event, { kind: 'largeStart' }>;
    expect(start.head.length).toBe(100);
    const lasts = rec.events.filter((e) => e.kind === 'largePart').map((e) => (e as { last: boolean }).last);
    expect(lasts).toEqual([false, true]);
    const got = reassemble(rec.events, THRESHOLD);
    expect(got.map((m) => m.bytes)).toEqual([small, big, small, small]);
    expect(got.map((m) => m.large)).toEqual([false, true, false, false]);
  });

  it('delivers a large message of a non-streamable type whole, even when split', () => {
    const big = MESSAGES[5]; // 'T', 205 bytes
    const rec = new Recorder();
    const framer = new Framer(rec, STREAMABLE, THRESHOLD);
    framer.push(Buffer.from(big.subarray(0, 3)));
    framer.push(Buffer.from(big.subarray(3, 100)));
    framer.push(Buffer.from(big.subarray(100, 204)));
    expect(rec.events).toEqual([]);
    framer.push(Buffer.concat([big.subarray(204), MESSAGES[0]]));
    expect(rec.events.map((e) => e.kind)).toEqual(['message', 'message']);
    const got = reassemble(rec.events, THRESHOLD);
    expect(got[0].bytes.equals(big)).toBe(true);
    expect(got[1].bytes.equals(MESSAGES[0])).toBe(true);
  });

  it('uses a 256 kB threshold by default', () => {
    const body = filled(256 * 1024, 9);
    const atThreshold = msg(T('D')).bytes(body.subarray(0, 256 * 1024 - 5)).done();
    const above = msg(T('D')).bytes(body.subarray(0, 256 * 1024 - 4)).done();
    for (const [m, streamed] of [
      [atThreshold, false],
      [above, true],
    ] as const) {
      const rec = new Recorder();
      const framer = new Framer(rec, STREAMABLE);
      framer.push(Buffer.from(m.subarray(0, 10)));
      framer.push(Buffer.from(m.subarray(10)));
      expect(rec.events[0].kind).toBe(streamed ? 'largeStart' : 'message');
      const got = reassemble(rec.events, 256 * 1024);
      expect(got).toHaveLength(1);
      expect(got[0].bytes.equals(m)).toBe(true);
    }
  });

  describe('invalid lengths', () => {
    const expectProtocolViolation = (f: () => void): void => {
      let err: unknown;
      try {
        f();
      } catch (e) {
        err = e;
      }
      expect(err).toBeInstanceOf(PgError);
      expect((err as PgError).code).toBe('08P01');
      expect((err as PgError).severity).toBe('FATAL');
    };

    it.each([0, 1, 3, -1, -0x80000000, 0x7fffffff])('rejects length %i', (length) => {
      const bad = Buffer.alloc(5);
      bad[0] = T('Q');
      bad.writeInt32BE(length, 1);
      expectProtocolViolation(() => new Framer(new Recorder(), STREAMABLE, THRESHOLD).push(bad));
    });

    it('accepts the minimal length 4', () => {
      const rec = new Recorder();
      new Framer(rec, STREAMABLE, THRESHOLD).push(Buffer.from([T('S'), 0, 0, 0, 4]));
      expect(rec.events).toHaveLength(1);
    });

    it('rejects an invalid length after valid messages and with the header split across chunks', () => {
      const rec = new Recorder();
      const framer = new Framer(rec, STREAMABLE, THRESHOLD);
      framer.push(Buffer.concat([MESSAGES[2], Buffer.from([T('Q'), 0, 0])]));
      expect(rec.events).toHaveLength(1);
      expectProtocolViolation(() => framer.push(Buffer.from([0, 2])));
    });
  });
});
