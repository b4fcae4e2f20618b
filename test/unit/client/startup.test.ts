import { describe, it, expect } from 'vitest';
import { MAX_STARTUP_PACKET, parseOptions, parseStartupPacket, readStartupPackets, type StartupHandler } from '../../../src/client/startup.js';
import { cancelRequest, sslRequest, startupMessage } from '../../../src/protocol/messages.js';
import { PgError } from '../../../src/protocol/sqlstate.js';

const i32 = (n: number): Buffer => {
  const b = Buffer.alloc(4);
  b.writeInt32BE(n, 0);
  return b;
};
/** Untyped packet: length (including itself) + code + body. */
const packet = (code: number, body: Buffer = Buffer.alloc(0)): Buffer => Buffer.concat([i32(8 + body.length), i32(code), body]);
const pairs = (...kv: string[]): Buffer => Buffer.from(kv.map((s) => s + '\0').join('') + '\0', 'utf8');

function pgError(f: () => unknown): PgError {
  try {
    f();
  } catch (e) {
    expect(e).toBeInstanceOf(PgError);
    return e as PgError;
  }
  throw new Error('expected a PgError, nothing was thrown');
}

describe('parseStartupPacket', () => {
  it('recognizes SSLRequest and GSSENCRequest', () => {
    expect(parseStartupPacket(sslRequest())).toEqual({ kind: 'ssl' });
    expect(parseStartupPacket(packet(80877103))).toEqual({ kind: 'ssl' });
    expect(parseStartupPacket(packet(80877104))).toEqual({ kind: 'gss' });
  });

  it('parses a CancelRequest', () => {
    expect(parseStartupPacket(cancelRequest(4242, -123456789))).toEqual({ kind: 'cancel', pid: 4242, secret: -123456789 });
    expect(parseStartupPacket(packet(80877102, Buffer.concat([i32(7), i32(0x7fffffff)])))).toEqual({ kind: 'cancel', pid: 7, secret: 0x7fffffff });
  });

  it('rejects a truncated CancelRequest', () => {
    const e = pgError(() => parseStartupPacket(packet(80877102, i32(7))));
    expect(e.code).toBe('08P01');
    expect(e.severity).toBe('FATAL');
  });

  it('parses protocol 3.0 with parameters', () => {
    const p = parseStartupPacket(startupMessage({ user: 'alice', database: 'db1', application_name: 'psql', options: '-c search_path=x' }));
    expect(p).toEqual({
      kind: 'startup',
      minor: 0,
      params: new Map([
        ['user', 'alice'],
        ['database', 'db1'],
        ['application_name', 'psql'],
        ['options', '-c search_path=x'],
      ]),
      protocolOptions: [],
    });
  });

  it('keeps empty values and UTF-8', () => {
    const p = parseStartupPacket(packet(196608, pairs('user', 'ünï', 'application_name', '', 'database', 'd')));
    expect(p.kind).toBe('startup');
    if (p.kind !== 'startup') return;
    expect([...p.params]).toEqual([
      ['user', 'ünï'],
      ['application_name', ''],
      ['database', 'd'],
    ]);
  });

  it('parses a packet with no parameters', () => {
    expect(parseStartupPacket(packet(196608, Buffer.from([0])))).toEqual({ kind: 'startup', minor: 0, params: new Map(), protocolOptions: [] });
  });

  it('reports the minor version of protocol 3.2', () => {
    const p = parseStartupPacket(packet((3 << 16) | 2, pairs('user', 'bob')));
    expect(p).toEqual({ kind: 'startup', minor: 2, params: new Map([['user', 'bob']]), protocolOptions: [] });
  });

  it('separates _pq_. protocol options from parameters', () => {
    const p = parseStartupPacket(packet(196608, pairs('user', 'bob', '_pq_.something', 'on', 'database', 'db', '_pq_.other', '1')));
    expect(p).toEqual({
      kind: 'startup',
      minor: 0,
      params: new Map([
        ['user', 'bob'],
        ['database', 'db'],
      ]),
      protocolOptions: ['_pq_.something', '_pq_.other'],
    });
  });

  it('rejects protocol 2 (and other majors) with 0A000', () => {
    for (const code of [2 << 16, (1 << 16) | 0, (4 << 16) | 0, 1234]) {
      const e = pgError(() => parseStartupPacket(packet(code, pairs('user', 'bob'))));
      expect(e.code).toBe('0A000');
      expect(e.severity).toBe('FATAL');
    }
    expect(pgError(() => parseStartupPacket(packet(2 << 16, pairs('user', 'bob')))).message).toMatch(/unsupported frontend protocol 2\.0/);
  });

  it('rejects packets shorter than 8 bytes', () => {
    for (const len of [0, 4, 7]) {
      const e = pgError(() => parseStartupPacket(Buffer.alloc(len)));
      expect(e.code).toBe('08P01');
    }
  });

  it('rejects a key without a value (08P01)', () => {
    const e = pgError(() => parseStartupPacket(packet(196608, Buffer.from('user\0'))));
    expect(e.code).toBe('08P01');
    expect(e.severity).toBe('FATAL');
  });

  it('rejects a value without its terminator (08P01)', () => {
    const e = pgError(() => parseStartupPacket(packet(196608, Buffer.from('user\0bob'))));
    expect(e.code).toBe('08P01');
  });

  // Postgres (ProcessStartupPacket) requires the list terminator to be exactly the last byte:
  // "invalid startup packet layout: expected terminator as last byte".
  it('rejects a packet missing the final terminator (08P01), as Postgres does', () => {
    const e = pgError(() => parseStartupPacket(packet(196608, Buffer.from('user\0bob\0'))));
    expect(e.code).toBe('08P01');
  });

  it('rejects bytes after the final terminator (08P01), as Postgres does', () => {
    const e = pgError(() => parseStartupPacket(packet(196608, Buffer.from('user\0bob\0\0database\0evil\0\0'))));
    expect(e.code).toBe('08P01');
  });

  it('exposes the Postgres startup packet limit', () => {
    expect(MAX_STARTUP_PACKET).toBe(10_000);
  });
});

describe('parseOptions', () => {
  const opts = (s: string): Record<string, string> => Object.fromEntries(parseOptions(s));

  it('returns nothing for an empty or blank string', () => {
    expect(parseOptions('').size).toBe(0);
    expect(parseOptions('   \t ').size).toBe(0);
  });

  it('parses -c name=value, -cname=value and --name=value', () => {
    expect(opts('-c a=b')).toEqual({ a: 'b' });
    expect(opts('-ca=b')).toEqual({ a: 'b' });
    expect(opts('--a=b')).toEqual({ a: 'b' });
    expect(opts('  -c search_path=s1\t-cstatement_timeout=5s   --work-mem=64MB ')).toEqual({ search_path: 's1', statement_timeout: '5s', work_mem: '64MB' });
  });

  it('turns dashes in the name (not the value) into underscores', () => {
    expect(opts('--a-b=c')).toEqual({ a_b: 'c' });
    expect(opts('-c a-b-c=d-e')).toEqual({ a_b_c: 'd-e' });
    expect(opts('-cx-y=--z')).toEqual({ x_y: '--z' });
  });

  it('keeps everything after the first = in the value, including an empty value', () => {
    expect(opts('-c a=b=c')).toEqual({ a: 'b=c' });
    expect(opts('-c a=')).toEqual({ a: '' });
  });

  it('lets a later setting win', () => {
    expect(opts('-c a=1 --a=2')).toEqual({ a: '2' });
  });

  it('honours backslash-escaped spaces and backslashes', () => {
    expect(opts('-c search_path=a\\ b')).toEqual({ search_path: 'a b' });
    expect(opts('-c application_name=my\\ app\\ \\ x -c b=1')).toEqual({ application_name: 'my app  x', b: '1' });
    expect(opts('-c a=x\\\\y')).toEqual({ a: 'x\\y' });
    expect(opts('-c\\ a=b')).toEqual({ ' a': 'b' }); // escaped space joins it to -c
  });

  it.each([
    ['-c'],
    ['-c a=b -c'],
    ['-c a'],
    ['-c =b'],
    ['-ca'],
    ['--a'],
    ['--=x'],
    ['-x'],
    ['-d 5'],
    ['a=b'],
    ['-c a=b stray'],
  ])('rejects %j with 08P01', (s) => {
    const e = pgError(() => parseOptions(s));
    expect(e.code).toBe('08P01');
    expect(e.severity).toBe('FATAL');
  });
});

describe('readStartupPackets', () => {
  /** A handler that writes down what it was asked, in order. */
  function recorder(): { seen: string[]; handler: StartupHandler } {
    const seen: string[] = [];
    return {
      seen,
      handler: {
        ssl: () => seen.push('ssl'),
        gss: () => seen.push('gss'),
        cancel: (pid, secret) => seen.push(`cancel ${pid} ${secret}`),
        startup: (p, rest) => seen.push(`startup ${p.params.get('user')} rest ${rest.toString('hex')}`),
      },
    };
  }

  it('holds an incomplete packet until the rest arrives, however it is split', () => {
    const whole = startupMessage({ user: 'alice', database: 'db' });
    for (const cut of [1, 3, 4, 7, whole.length - 1]) {
      const { seen, handler } = recorder();
      const held = readStartupPackets(whole.subarray(0, cut), handler);
      expect(seen).toEqual([]);
      expect(held).toEqual(whole.subarray(0, cut));
      expect(readStartupPackets(Buffer.concat([held!, whole.subarray(cut)]), handler)).toBeNull();
      expect(seen).toEqual(['startup alice rest ']);
    }
  });

  it('reads on after a refused GSS request, and hands over the bytes after the StartupMessage', () => {
    const { seen, handler } = recorder();
    const query = Buffer.from('Q\0\0\0\x0dselect 1\0', 'latin1');
    expect(readStartupPackets(Buffer.concat([packet(80877104), startupMessage({ user: 'bob' }), query]), handler)).toBeNull();
    expect(seen).toEqual(['gss', `startup bob rest ${query.toString('hex')}`]);
  });

  it('stops at an SSL request or a cancel request', () => {
    const ssl = recorder();
    expect(readStartupPackets(sslRequest(), ssl.handler)).toBeNull();
    expect(ssl.seen).toEqual(['ssl']);
    const cancel = recorder();
    expect(readStartupPackets(Buffer.concat([cancelRequest(7, 9), startupMessage({ user: 'bob' })]), cancel.handler)).toBeNull();
    expect(cancel.seen).toEqual(['cancel 7 9']);
  });

  it('refuses plain bytes after an SSL request (they would be read as the TLS handshake) and impossible lengths', () => {
    const { seen, handler } = recorder();
    expect(pgError(() => readStartupPackets(Buffer.concat([sslRequest(), startupMessage({ user: 'bob' })]), handler)).code).toBe('08P01');
    expect(seen).toEqual([]);
    for (const len of [0, 7, MAX_STARTUP_PACKET + 1]) {
      const e = pgError(() => readStartupPackets(Buffer.concat([i32(len), i32(196608)]), handler));
      expect([e.code, e.message, e.severity]).toEqual(['08P01', 'invalid length of startup packet', 'FATAL']);
    }
  });
});
