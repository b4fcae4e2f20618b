import { createHash } from 'node:crypto';
import { describe, it, expect } from 'vitest';
import { md5PasswordHash, md5Response, verifyMd5Response } from '../../../src/auth/md5.js';

const md5 = (s: string | Buffer) => createHash('md5').update(s).digest('hex');
const SALT = Buffer.from([0x01, 0x02, 0xfe, 0xff]);

describe('md5 auth', () => {
  it('hashes like pg_authid', () => {
    expect(md5PasswordHash('postgres', 'secret')).toBe('md5' + md5('secretpostgres'));
    // Written by PostgreSQL 18 for role "bob" with password 'secret' and password_encryption = md5.
    expect(md5PasswordHash('bob', 'secret')).toBe('md521f3163f8f86fa10bdefbfbd502a8f06');
  });

  it('computes the same response from the password and from the stored hash', () => {
    const stored = md5PasswordHash('postgres', 'secret');
    const fromPassword = md5Response('secret', 'postgres', SALT);
    expect(fromPassword).toBe(md5Response(stored, 'postgres', SALT));
    expect(fromPassword).toBe('md5' + md5(Buffer.concat([Buffer.from(stored.slice(3)), SALT])));
    expect(fromPassword).toMatch(/^md5[0-9a-f]{32}$/);
  });

  it('verifies a correct response and rejects wrong ones', () => {
    const stored = md5PasswordHash('postgres', 'secret');
    const good = md5Response('secret', 'postgres', SALT);
    expect(verifyMd5Response(stored, 'postgres', SALT, good)).toBe(true);
    expect(verifyMd5Response('secret', 'postgres', SALT, good)).toBe(true);
    expect(verifyMd5Response(stored, 'postgres', SALT, md5Response('wrong', 'postgres', SALT))).toBe(false);
    expect(verifyMd5Response(stored, 'postgres', Buffer.from([0, 0, 0, 0]), good)).toBe(false);
    // With a plaintext password the user is salted in; a stored hash already contains it.
    expect(verifyMd5Response('secret', 'other', SALT, good)).toBe(false);
    expect(verifyMd5Response(stored, 'postgres', SALT, '')).toBe(false);
    expect(verifyMd5Response(stored, 'postgres', SALT, good.toUpperCase())).toBe(false);
  });
});
