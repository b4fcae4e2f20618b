import { beforeAll, describe, expect, it } from 'vitest';
import { ReadClassifier } from '../../../src/routing/read-only.js';
import { Frontend } from '../../../src/protocol/codes.js';
import { msg, query } from '../../../src/protocol/messages.js';
import type { Held } from '../../../src/client/units.js';

let rc: ReadClassifier;
beforeAll(async () => {
  rc = await ReadClassifier.create();
});

const held = (...bufs: Buffer[]): Held[] => bufs.map((buf) => ({ kind: 'message', type: buf[0], buf, start: 0, end: buf.length, total: buf.length, last: true }));
const parse = (name: string, sql: string) => msg(Frontend.Parse).str(name).str(sql).i16(0).done();
const bind = (stmt: string) => msg(Frontend.Bind).str('').str(stmt).i16(0).i16(0).i16(0).done();
const execute = () => msg(Frontend.Execute).str('').i32(0).done();
const describeS = (name: string) => msg(Frontend.Describe).byte(0x53).str(name).done();
const sync = () => msg(Frontend.Sync).done();
const flush = () => msg(Frontend.Flush).done();

describe('ReadClassifier', () => {
  it.each([
    ['select * from items where id = 1', 'read'],
    ['SELECT count(*) FROM items; select 1', 'read'],
    ['show search_path', 'read'],
    ['select pg_is_in_recovery()', 'read'],
    ['begin read only', 'read-unit'],
    ['start transaction isolation level repeatable read, read only', 'read-unit'],
    ['begin', 'primary'],
    ['begin read write', 'primary'],
    ['insert into items values (1)', 'primary'],
    ['select * from items for update', 'primary'],
    ['select * from items for share skip locked', 'primary'],
    ['select * into t2 from items', 'primary'],
    ['with x as (delete from items returning *) select * from x', 'primary'],
    ["select nextval('s')", 'primary'],
    ['select pg_advisory_xact_lock(1)', 'primary'],
    ["select pg_catalog.pg_notify('c', 'x')", 'primary'],
    ['select (select txid_current())', 'primary'],
    ['select 1; insert into items values (2)', 'primary'],
    ['set search_path = x', 'primary'],
    ['select from', 'primary'],
  ])('%s → %s', (sql, kind) => {
    expect(rc.kindOf(sql)).toBe(kind);
  });

  it('judges the first batch of an extended-protocol unit and says how long it is', () => {
    const statements = new Map();
    expect(rc.batchKind(held(query('select 1'), query('insert into t values (1)')), statements)).toEqual({ kind: 'read', length: 1 });
    expect(rc.batchKind(held(parse('', 'select $1::int'), bind(''), execute(), sync(), query('x')), statements)).toEqual({ kind: 'read', length: 4 });
    expect(rc.batchKind(held(parse('s1', 'select 1'), bind('s1'), execute(), sync()), statements)).toEqual({ kind: 'read', length: 4 });
    expect(rc.batchKind(held(parse('', 'update t set a = 1'), bind(''), execute(), sync()), statements).kind).toBe('primary');
    expect(rc.batchKind(held(bind('unknown'), execute(), sync()), statements).kind).toBe('primary');
    expect(rc.batchKind(held(parse('s2', 'select 1'), describeS('s2'), sync()), statements).kind).toBe('primary');
    expect(rc.batchKind(held(parse('s3', 'select 1'), describeS('s3'), flush()), statements)).toEqual({ kind: 'read-unit', length: 3 });
  });
});
