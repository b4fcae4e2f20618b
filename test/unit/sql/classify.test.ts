import { beforeAll, describe, expect, it } from 'vitest';
import { UnitClassifier } from '../../../src/sql/classify.js';

let classifier: UnitClassifier;
beforeAll(async () => {
  classifier = await UnitClassifier.create();
});

const verdict = (sql: string): { shareable: boolean; pure: boolean } => {
  const { shareable, pure } = classifier.stats(sql, sql);
  return { shareable, pure };
};

describe('UnitClassifier', () => {
  it('lets plain reads share a pipelined connection and keep a tenant binding', () => {
    for (const sql of ['SELECT abalance FROM pgbench_accounts WHERE aid = 1', 'select count(*) filter (where a <> $1)::int from t', 'with x as (select * from t) select * from x join u using (id)']) {
      expect(verdict(sql), sql).toEqual({ shareable: true, pure: true });
    }
  });

  it('keeps writes and locking reads off shared connections (they may wait for a row lock) but lets them keep a binding', () => {
    for (const sql of [
      'UPDATE t SET v = v + 1 WHERE id = $1',
      'INSERT INTO h VALUES (1, 2, CURRENT_TIMESTAMP)',
      'DELETE FROM t WHERE id = 1',
      'select * from t where id = 1 for update',
      'select * from t for no key update skip locked',
      'select * from (select * from t for share) s',
      'with x as (update t set v = 1 returning *) select * from x',
      'with x as (delete from t returning *) select count(*) from x',
    ]) {
      expect(verdict(sql), sql).toEqual({ shareable: false, pure: true });
    }
  });

  it('counts transaction control as pure (the binding is sent before any transaction starts) but never shareable', () => {
    for (const sql of ['BEGIN', 'START TRANSACTION ISOLATION LEVEL SERIALIZABLE', 'COMMIT', 'END', 'ROLLBACK', 'SAVEPOINT a', 'ROLLBACK TO SAVEPOINT a', 'RELEASE a', 'COMMIT AND CHAIN']) {
      expect(verdict(sql), sql).toEqual({ shareable: false, pure: true });
    }
  });

  it('keeps anything that may change or read session state apart: settings, functions beyond the plain ones, SELECT INTO, several statements', () => {
    for (const sql of [
      'SET statement_timeout = 0',
      "select set_config('app.tenant_id', 'x', false)",
      "select current_setting('app.tenant_id')",
      'select my_function()',
      'select * into t2 from t',
      'select 1; select 2',
      'DISCARD ALL',
      'LISTEN x',
      'not sql at all',
    ]) {
      expect(verdict(sql), sql).toEqual({ shareable: false, pure: false });
    }
  });
});
