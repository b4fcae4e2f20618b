import { describe, expect, it } from 'vitest';
import { query } from '../../../src/protocol/messages.js';
import { transactionControl } from '../../../src/client/transaction-control.js';

const control = (sql: string): ReturnType<typeof transactionControl> => {
  const msg = query(sql);
  return transactionControl(msg, 0, msg.length);
};

describe('transactionControl', () => {
  it('recognises the plain forms of BEGIN, COMMIT and ROLLBACK in any case, with WORK/TRANSACTION and a semicolon', () => {
    for (const sql of ['BEGIN', 'begin;', '  Begin Work ; ', 'BEGIN TRANSACTION', 'start transaction', 'START\tTRANSACTION;']) expect(control(sql), sql).toBe('begin');
    for (const sql of ['COMMIT', 'commit;', 'END', 'end transaction;', 'COMMIT WORK']) expect(control(sql), sql).toBe('commit');
    for (const sql of ['ROLLBACK', 'rollback;', 'ABORT', 'abort work', 'ROLLBACK TRANSACTION']) expect(control(sql), sql).toBe('rollback');
  });

  it('leaves everything else to the server: options, chains, two-phase commit, savepoints, comments, several statements', () => {
    for (const sql of [
      'BEGIN ISOLATION LEVEL SERIALIZABLE',
      'BEGIN READ ONLY',
      'START TRANSACTION READ ONLY',
      'begin; select 1',
      'BEGIN; BEGIN',
      'COMMIT AND CHAIN',
      'ROLLBACK AND NO CHAIN',
      "COMMIT PREPARED 'x'",
      "ROLLBACK PREPARED 'x'",
      'ROLLBACK TO SAVEPOINT a',
      'START',
      'START WORK',
      'END IF',
      '/* c */ BEGIN',
      'BEGIN -- why',
      'begins',
      'select 1',
      '',
      'BEGIN' + ' '.repeat(100),
    ]) {
      expect(control(sql), JSON.stringify(sql)).toBeNull();
    }
  });

  it('reads the text inside a larger buffer at the given offsets only', () => {
    const msg = Buffer.concat([query('select 1'), query('COMMIT'), query('BEGIN READ ONLY')]);
    const first = query('select 1').length;
    const second = first + query('COMMIT').length;
    expect(transactionControl(msg, 0, first)).toBeNull();
    expect(transactionControl(msg, first, second)).toBe('commit');
    expect(transactionControl(msg, second, msg.length)).toBeNull();
  });
});
