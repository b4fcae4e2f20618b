import { describe, expect, it } from 'vitest';
import { checkMessage } from '../../../src/client/dispatch.js';
import { PgError } from '../../../src/protocol/sqlstate.js';

function refusal(type: number, length: number): { code: string; severity: string; message: string } | null {
  try {
    checkMessage(type, length);
    return null;
  } catch (err) {
    expect(err).toBeInstanceOf(PgError);
    const e = err as PgError;
    return { code: e.code, severity: e.severity, message: e.message };
  }
}

describe('checkMessage', () => {
  it('takes every message type a logged-in client may send', () => {
    for (const t of 'QPBDECSHFdcfX') expect(refusal(t.charCodeAt(0), t === 'H' || t === 'S' || t === 'c' || t === 'X' ? 5 : 12), t).toBeNull();
  });

  it('refuses other types with FATAL 08P01, as Postgres does', () => {
    for (const t of [0x70 /* p: a password message after login */, 0x00, 0x7a, 0xff, 0x4e]) {
      expect(refusal(t, 5)).toEqual({ code: '08P01', severity: 'FATAL', message: `invalid frontend message type ${t} ("${String.fromCharCode(t)}")` });
    }
  });

  it('refuses a Flush with bytes in it, and takes a Sync, CopyDone or Terminate with bytes (Postgres handles those without ignoring what follows)', () => {
    expect(refusal(0x48, 6)).toMatchObject({ code: '08P01', severity: 'FATAL' });
    for (const t of 'ScX') expect(refusal(t.charCodeAt(0), 6)).toBeNull();
  });
});
