/**
 * PostgreSQL md5 password authentication. pg_authid stores 'md5' + md5(password + user);
 * on the wire the client answers 'md5' + md5(<that hex> + 4-byte salt).
 */
import { createHash, timingSafeEqual } from 'node:crypto';

function md5Hex(data: string | Buffer): string {
  return createHash('md5').update(data).digest('hex');
}

/** What Postgres stores in pg_authid for an md5 password. */
export function md5PasswordHash(user: string, password: string): string {
  return 'md5' + md5Hex(password + user);
}

/** A stored md5 hash as Postgres writes it; anything else is taken as a plaintext password. */
function isMd5Hash(text: string): boolean {
  return /^md5[0-9a-f]{32}$/.test(text);
}

/** The client's answer to AuthenticationMD5Password; `storedOrPassword` is an md5 hash or a plaintext password. */
export function md5Response(storedOrPassword: string, user: string, salt: Buffer): string {
  const stored = isMd5Hash(storedOrPassword) ? storedOrPassword : md5PasswordHash(user, storedOrPassword);
  return 'md5' + md5Hex(Buffer.concat([Buffer.from(stored.slice(3)), salt]));
}

export function verifyMd5Response(storedOrPassword: string, user: string, salt: Buffer, response: string): boolean {
  const expected = Buffer.from(md5Response(storedOrPassword, user, salt));
  const actual = Buffer.from(response);
  return actual.length === expected.length && timingSafeEqual(actual, expected);
}
