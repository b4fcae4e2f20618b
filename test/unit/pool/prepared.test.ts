import { describe, it, expect } from 'vitest';
import { GLOBAL_PREFIX, globalizeParse, renameStatement } from '../../../src/pool/prepared.js';
import { msg } from '../../../src/protocol/messages.js';
import { cstringEnd, readCString } from '../../../src/protocol/read.js';

const T = (c: string): number => c.charCodeAt(0);

const parseMsg = (name: string, query: string, types: number[] = []): Buffer => {
  const b = msg(T('P')).str(name).str(query).i16(types.length);
  for (const t of types) b.i32(t);
  return b.done();
};

/** Bind: portal, statement, param formats, params, result formats. */
const bindMsg = (portal: string, stmt: string, params: Buffer[]): Buffer => {
  const b = msg(T('B')).str(portal).str(stmt).i16(1).i16(0).i16(params.length);
  for (const p of params) b.i32(p.length).bytes(p);
  return b.i16(0).done();
};

/** Places `m` inside a larger buffer, with junk on both sides. */
const embed = (m: Buffer): { buf: Buffer; start: number; end: number } => {
  const before = Buffer.from('junk-before');
  const after = Buffer.from('\0junk-after\0');
  return { buf: Buffer.concat([before, m, after]), start: before.length, end: before.length + m.length };
};

const globalName = (m: Buffer, context = ''): string | undefined => globalizeParse(m, 0, m.length, context)?.stmt.globalName;

describe('globalizeParse', () => {
  it('returns undefined for the unnamed statement', () => {
    expect(globalizeParse(parseMsg('', 'SELECT 1'), 0, parseMsg('', 'SELECT 1').length, '')).toBeUndefined();
    const { buf, start, end } = embed(parseMsg('', 'SELECT $1', [23]));
    expect(globalizeParse(buf, start, end, 'ctx')).toBeUndefined();
  });

  it('returns undefined when the name has no terminator inside the message', () => {
    const m = Buffer.from([T('P'), 0, 0, 0, 7, T('a'), T('b'), T('c')]);
    expect(globalizeParse(Buffer.concat([m, Buffer.from([0])]), 0, m.length, '')).toBeUndefined();
  });

  it('keeps the client name and makes a prefixed global name', () => {
    const r = globalizeParse(parseMsg('my_stmt', 'SELECT 1'), 0, parseMsg('my_stmt', 'SELECT 1').length, '');
    expect(r).toBeDefined();
    expect(r!.clientName).toBe('my_stmt');
    expect(r!.stmt.globalName.startsWith(GLOBAL_PREFIX)).toBe(true);
    expect(r!.stmt.globalName).toMatch(/^pgt_[A-Za-z0-9_-]{26}$/);
    // Fits in NAMEDATALEN - 1 = 63 bytes.
    expect(Buffer.byteLength(r!.stmt.globalName)).toBeLessThanOrEqual(63);
  });

  it('gives the same global name for the same query, types and context, whatever the client name', () => {
    const a = globalName(parseMsg('a', 'SELECT $1::int', [23]), 'tenant1');
    const b = globalName(parseMsg('some_other_name', 'SELECT $1::int', [23]), 'tenant1');
    const { buf, start, end } = embed(parseMsg('c', 'SELECT $1::int', [23]));
    const c = globalizeParse(buf, start, end, 'tenant1')?.stmt.globalName;
    expect(a).toBeDefined();
    expect(b).toBe(a);
    expect(c).toBe(a);
  });

  it('gives a different global name when the query, the parameter types or the context differ', () => {
    const base = globalName(parseMsg('s', 'SELECT $1', [23]), 'ctx');
    const names = [
      base,
      globalName(parseMsg('s', 'SELECT $1 ', [23]), 'ctx'),
      globalName(parseMsg('s', 'SELECT $1', [20]), 'ctx'),
      globalName(parseMsg('s', 'SELECT $1', []), 'ctx'),
      globalName(parseMsg('s', 'SELECT $1', [23, 23]), 'ctx'),
      globalName(parseMsg('s', 'SELECT $1', [23]), 'ctx2'),
      globalName(parseMsg('s', 'SELECT $1', [23]), ''),
    ];
    expect(new Set(names).size).toBe(names.length);
  });

  it('produces a valid Parse: right length, name replaced, rest unchanged', () => {
    const original = parseMsg('client_name', 'SELECT * FROM t WHERE a = $1 AND b = $2', [23, 25]);
    const { buf, start, end } = embed(original);
    const r = globalizeParse(buf, start, end, 'ctx')!;
    const p = r.stmt.parse;
    expect(p[0]).toBe(T('P'));
    expect(p.readInt32BE(1)).toBe(p.length - 1);
    expect(readCString(p, 5, p.length)).toBe(r.stmt.globalName);
    const nameEnd = cstringEnd(p, 5, p.length);
    const origNameEnd = cstringEnd(original, 5, original.length);
    expect(p.subarray(nameEnd).equals(original.subarray(origNameEnd))).toBe(true);
    // The same as building it from scratch under the global name.
    expect(p.equals(parseMsg(r.stmt.globalName, 'SELECT * FROM t WHERE a = $1 AND b = $2', [23, 25]))).toBe(true);
  });

  it('copies: the rewritten Parse does not change when the source buffer is reused', () => {
    const original = parseMsg('s', 'SELECT 42', []);
    const buf = Buffer.from(original);
    const r = globalizeParse(buf, 0, buf.length, '')!;
    const snapshot = Buffer.from(r.stmt.parse);
    buf.fill(0x7a);
    expect(r.stmt.parse.equals(snapshot)).toBe(true);
  });

  it('handles multi-byte UTF-8 in the query and the client name', () => {
    const original = parseMsg('état', "SELECT 'ünïcödé ✓'", []);
    const r = globalizeParse(original, 0, original.length, '')!;
    expect(r.clientName).toBe('état');
    expect(r.stmt.parse.equals(parseMsg(r.stmt.globalName, "SELECT 'ünïcödé ✓'", []))).toBe(true);
  });
});

describe('renameStatement', () => {
  const GLOBAL = GLOBAL_PREFIX + 'abcdefghijklmnopqrstuvwxyz';

  const bindNames = (buf: Buffer, start: number, end: number): { portalEnd: number; nameEnd: number } => {
    const portalEnd = cstringEnd(buf, start + 5, end);
    return { portalEnd, nameEnd: cstringEnd(buf, portalEnd, end) };
  };

  it.each([
    ['', 's1'],
    ['portal', 's1'],
    ['p', 'a_much_longer_client_statement_name_than_the_global_one_is_xx'],
  ])('rewrites a Bind (portal %j, statement %j)', (portal, stmt) => {
    const params = [Buffer.from('42'), Buffer.from('héllo')];
    const original = bindMsg(portal, stmt, params);
    const { buf, start, end } = embed(original);
    const { portalEnd, nameEnd } = bindNames(buf, start, end);
    const out = renameStatement(buf, start, end, portalEnd, nameEnd, GLOBAL);
    expect(out.equals(bindMsg(portal, GLOBAL, params))).toBe(true);
    expect(out.readInt32BE(1)).toBe(out.length - 1);
  });

  it('rewrites a Describe and a Close of a statement', () => {
    for (const type of ['D', 'C']) {
      const original = msg(T(type)).byte(T('S')).str('my_statement').done();
      const { buf, start, end } = embed(original);
      const nameEnd = cstringEnd(buf, start + 6, end);
      const out = renameStatement(buf, start, end, start + 6, nameEnd, GLOBAL);
      expect(out.equals(msg(T(type)).byte(T('S')).str(GLOBAL).done())).toBe(true);
      expect(hex(out.subarray(0, 6))).toBe(hex(Buffer.from([T(type), 0, 0, 0, 4 + 1 + GLOBAL.length + 1, T('S')])));
    }
  });

  it('rewrites only the head of a large Bind, with the length of the whole message', () => {
    const big = Buffer.alloc(5000, 0x61);
    const original = bindMsg('', 'stmt', [Buffer.from('x'), big]);
    const expected = bindMsg('', GLOBAL, [Buffer.from('x'), big]);
    for (const headLen of [5 + 1 + 5, 64, 300]) {
      const head = Buffer.from(original.subarray(0, headLen));
      const { portalEnd, nameEnd } = bindNames(head, 0, head.length);
      const out = renameStatement(head, 0, head.length, portalEnd, nameEnd, GLOBAL, original.length);
      expect(out.length).toBe(headLen - 'stmt'.length + GLOBAL.length);
      expect(out.readInt32BE(1)).toBe(expected.length - 1);
      expect(out.equals(expected.subarray(0, out.length))).toBe(true);
      expect(Buffer.concat([out, original.subarray(headLen)]).equals(expected)).toBe(true);
    }
  });

  it('rewrites a large Bind head that starts at an offset in its buffer', () => {
    const original = bindMsg('portal', 'stmt', [Buffer.alloc(1000, 1)]);
    const headLen = 100;
    const { buf, start } = embed(original);
    const end = start + headLen;
    const { portalEnd, nameEnd } = bindNames(buf, start, end);
    const out = renameStatement(buf, start, end, portalEnd, nameEnd, GLOBAL, original.length);
    expect(Buffer.concat([out, original.subarray(headLen)]).equals(bindMsg('portal', GLOBAL, [Buffer.alloc(1000, 1)]))).toBe(true);
  });
});

function hex(b: Buffer): string {
  return b.toString('hex');
}
