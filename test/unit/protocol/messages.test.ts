import { describe, it, expect } from 'vitest';
import * as m from '../../../src/protocol/messages.js';
import { cstringEnd, parseErrorFields, readCString } from '../../../src/protocol/read.js';

const hex = (b: Buffer): string => b.toString('hex').replace(/(..)(?!$)/g, '$1 ');
const bytes = (s: string): Buffer => Buffer.from(s.replace(/\s+/g, ''), 'hex');
const cstr = (s: string): Buffer => Buffer.concat([Buffer.from(s, 'utf8'), Buffer.from([0])]);
/** type byte + int32 length (including itself) + body. */
const typed = (type: string, ...body: Buffer[]): Buffer => {
  const b = Buffer.concat(body);
  const head = Buffer.alloc(5);
  head[0] = type.charCodeAt(0);
  head.writeInt32BE(b.length + 4, 1);
  return Buffer.concat([head, b]);
};
const i32 = (n: number): Buffer => {
  const b = Buffer.alloc(4);
  b.writeInt32BE(n, 0);
  return b;
};
const i16 = (n: number): Buffer => {
  const b = Buffer.alloc(2);
  b.writeInt16BE(n, 0);
  return b;
};

describe('message builders: exact bytes', () => {
  it('ReadyForQuery', () => {
    expect(hex(m.readyForQuery('I'.charCodeAt(0)))).toBe('5a 00 00 00 05 49');
    expect(hex(m.readyForQuery('T'.charCodeAt(0)))).toBe('5a 00 00 00 05 54');
    expect(hex(m.readyForQuery('E'.charCodeAt(0)))).toBe('5a 00 00 00 05 45');
  });

  it('bodiless messages', () => {
    expect(hex(m.PARSE_COMPLETE)).toBe('31 00 00 00 04');
    expect(hex(m.CLOSE_COMPLETE)).toBe('33 00 00 00 04');
    expect(hex(m.SYNC)).toBe('53 00 00 00 04');
    expect(hex(m.TERMINATE)).toBe('58 00 00 00 04');
  });

  it('authentication requests', () => {
    expect(hex(m.authenticationOk())).toBe('52 00 00 00 08 00 00 00 00');
    expect(hex(m.authenticationCleartext())).toBe('52 00 00 00 08 00 00 00 03');
    expect(hex(m.authenticationMd5(Buffer.from([0xde, 0xad, 0xbe, 0xef])))).toBe('52 00 00 00 0c 00 00 00 05 de ad be ef');
    expect(m.authenticationSasl(['SCRAM-SHA-256-PLUS', 'SCRAM-SHA-256']).equals(typed('R', i32(10), cstr('SCRAM-SHA-256-PLUS'), cstr('SCRAM-SHA-256'), Buffer.from([0])))).toBe(true);
    expect(m.authenticationSaslContinue('r=abc,s=xyz,i=4096').equals(typed('R', i32(11), Buffer.from('r=abc,s=xyz,i=4096')))).toBe(true);
    expect(m.authenticationSaslFinal('v=sig').equals(typed('R', i32(12), Buffer.from('v=sig')))).toBe(true);
  });

  it('ParameterStatus', () => {
    const b = m.parameterStatus('client_encoding', 'UTF8');
    expect(hex(b)).toBe('53 00 00 00 19 ' + hex(Buffer.from('client_encoding\0UTF8\0')));
    expect(b.readInt32BE(1)).toBe(b.length - 1);
    const nameEnd = cstringEnd(b, 5, b.length);
    expect(readCString(b, 5, b.length)).toBe('client_encoding');
    expect(readCString(b, nameEnd, b.length)).toBe('UTF8');
    expect(cstringEnd(b, nameEnd, b.length)).toBe(b.length);
  });

  it('ParameterStatus with multi-byte UTF-8 counts bytes, not characters', () => {
    const b = m.parameterStatus('application_name', 'épreuve ✓');
    expect(b.equals(typed('S', cstr('application_name'), cstr('épreuve ✓')))).toBe(true);
    expect(readCString(b, cstringEnd(b, 5, b.length), b.length)).toBe('épreuve ✓');
  });

  it('BackendKeyData, CommandComplete, NegotiateProtocolVersion', () => {
    expect(hex(m.backendKeyData(0x01020304, -2))).toBe('4b 00 00 00 0c 01 02 03 04 ff ff ff fe');
    expect(m.commandComplete('SELECT 1').equals(typed('C', cstr('SELECT 1')))).toBe(true);
    expect(hex(m.negotiateProtocolVersion(0, []))).toBe('76 00 00 00 0c 00 00 00 00 00 00 00 00');
    expect(m.negotiateProtocolVersion(0, ['_pq_.a', '_pq_.b']).equals(typed('v', i32(0), i32(2), cstr('_pq_.a'), cstr('_pq_.b')))).toBe(true);
  });

  it('ErrorResponse with all fields', () => {
    const b = m.errorResponse({ severity: 'FATAL', code: '28P01', message: 'password authentication failed', detail: 'the detail', hint: 'the hint' });
    const expected = typed(
      'E',
      Buffer.from('S'),
      cstr('FATAL'),
      Buffer.from('V'),
      cstr('FATAL'),
      Buffer.from('C'),
      cstr('28P01'),
      Buffer.from('M'),
      cstr('password authentication failed'),
      Buffer.from('D'),
      cstr('the detail'),
      Buffer.from('H'),
      cstr('the hint'),
      Buffer.from([0]),
    );
    expect(hex(b)).toBe(hex(expected));
    expect(b[b.length - 1]).toBe(0);
    expect(b[b.length - 2]).toBe(0); // end of the hint, then the terminator

    const fields = parseErrorFields(b, 5, b.length);
    expect([...fields]).toEqual([
      ['S', 'FATAL'],
      ['V', 'FATAL'],
      ['C', '28P01'],
      ['M', 'password authentication failed'],
      ['D', 'the detail'],
      ['H', 'the hint'],
    ]);
  });

  it('ErrorResponse without detail and hint, and NoticeResponse', () => {
    const b = m.errorResponse({ severity: 'ERROR', code: '42501', message: 'nope' });
    expect(b.equals(typed('E', Buffer.from('S'), cstr('ERROR'), Buffer.from('V'), cstr('ERROR'), Buffer.from('C'), cstr('42501'), Buffer.from('M'), cstr('nope'), Buffer.from([0])))).toBe(true);
    expect([...parseErrorFields(b, 5, b.length).keys()]).toEqual(['S', 'V', 'C', 'M']);

    const n = m.noticeResponse({ severity: 'WARNING', code: '01000', message: 'careful', hint: 'h' });
    expect(n[0]).toBe('N'.charCodeAt(0));
    expect(n.readInt32BE(1)).toBe(n.length - 1);
    expect(Object.fromEntries(parseErrorFields(n, 5, n.length))).toEqual({ S: 'WARNING', V: 'WARNING', C: '01000', M: 'careful', H: 'h' });
  });

  it('startup-phase packets have no type byte', () => {
    const s = m.startupMessage({ user: 'alice', database: 'db1' });
    expect(s.equals(Buffer.concat([i32(4 + 4 + 5 + 6 + 9 + 4 + 1), i32(196608), cstr('user'), cstr('alice'), cstr('database'), cstr('db1'), Buffer.from([0])]))).toBe(true);
    expect(s.readInt32BE(0)).toBe(s.length);
    expect(hex(s.subarray(4, 8))).toBe('00 03 00 00');
    expect(hex(m.startupMessage({}))).toBe('00 00 00 09 00 03 00 00 00');
    expect(hex(m.sslRequest())).toBe('00 00 00 08 04 d2 16 2f');
    expect(hex(m.cancelRequest(1234, -5))).toBe('00 00 00 10 04 d2 16 2e 00 00 04 d2 ff ff ff fb');
  });

  it('frontend messages', () => {
    expect(m.passwordMessage('secret').equals(typed('p', cstr('secret')))).toBe(true);
    expect(m.saslInitialResponse('SCRAM-SHA-256', 'n,,n=,r=abc').equals(typed('p', cstr('SCRAM-SHA-256'), i32(11), Buffer.from('n,,n=,r=abc')))).toBe(true);
    expect(m.saslResponse('c=biws,r=abc,p=xyz').equals(typed('p', Buffer.from('c=biws,r=abc,p=xyz')))).toBe(true);
    expect(hex(m.query('SELECT 1'))).toBe('51 00 00 00 0d ' + hex(Buffer.from('SELECT 1\0')));
    expect(hex(m.closeStatement('s1'))).toBe('43 00 00 00 08 53 73 31 00');
  });

  it('msg() composes every field kind with the right length', () => {
    const b = m.msg('X'.charCodeAt(0)).byte(0).byte(255).i16(-1).i32(7).str('').str('ab').bytes(Buffer.from([9, 8])).done();
    expect(b.equals(bytes('58 00000012 00 ff ffff 00000007 00 616200 0908'))).toBe(true);
    expect(b.equals(typed('X', Buffer.from([0, 255]), i16(-1), i32(7), cstr(''), cstr('ab'), Buffer.from([9, 8])))).toBe(true);
  });
});

describe('read helpers', () => {
  it('readCString and cstringEnd respect the end bound', () => {
    const b = Buffer.from('xxabc\0def\0');
    expect(readCString(b, 2, b.length)).toBe('abc');
    expect(cstringEnd(b, 2, b.length)).toBe(6);
    expect(readCString(b, 6, b.length)).toBe('def');
    expect(readCString(b, 2, 5)).toBeUndefined(); // NUL at 5 is outside [2, 5)
    expect(cstringEnd(b, 2, 5)).toBe(-1);
    expect(readCString(b, 5, 6)).toBe('');
    expect(readCString(Buffer.from('abc'), 0, 3)).toBeUndefined();
  });

  it('parseErrorFields stops at the terminator and at a truncated field', () => {
    const b = Buffer.concat([Buffer.from('SERROR\0Mboom\0'), Buffer.from([0]), Buffer.from('Cignored\0')]);
    expect(Object.fromEntries(parseErrorFields(b, 0, b.length))).toEqual({ S: 'ERROR', M: 'boom' });
    const truncated = Buffer.from('SERROR\0Mbo');
    expect(Object.fromEntries(parseErrorFields(truncated, 0, truncated.length))).toEqual({ S: 'ERROR' });
  });
});
