import { randomBytes } from 'node:crypto';
import { describe, it, expect } from 'vitest';
import {
  ScramClientSession,
  ScramServerSession,
  formatScramVerifier,
  makeScramVerifier,
  parseScramVerifier,
} from '../../../src/auth/scram.js';

// RFC 7677 section 3.
const RFC = {
  user: 'user',
  password: 'pencil',
  clientNonce: 'rOprNGfwEbeRWgbNEkqO',
  serverNonce: '%hvYDpWUa2RaTCAfuxFIlj)hNlF$k0',
  salt: Buffer.from('W22ZaJ0SNY7soEsUEjb6gQ==', 'base64'),
  iterations: 4096,
  clientFirst: 'n,,n=user,r=rOprNGfwEbeRWgbNEkqO',
  serverFirst: 'r=rOprNGfwEbeRWgbNEkqO%hvYDpWUa2RaTCAfuxFIlj)hNlF$k0,s=W22ZaJ0SNY7soEsUEjb6gQ==,i=4096',
  clientFinal: 'c=biws,r=rOprNGfwEbeRWgbNEkqO%hvYDpWUa2RaTCAfuxFIlj)hNlF$k0,p=dHzbZapWIk4jUhN+Ute9ytag9zjfMHgsqmmiz7AndVQ=',
  serverFinal: 'v=6rriTRBi23WpRR/wtup+mMhUZUn/dB5nLTJRsjl95G4=',
};
const RFC_VERIFIER =
  'SCRAM-SHA-256$4096:W22ZaJ0SNY7soEsUEjb6gQ==$WG5d8oPm3OtcPnkdi4Uo7BkeZkBFzpcXkuLmtbsT4qY=:wfPLwcE6nTWhTAmQ7tl2KeoiWGPlZqQxSrmfPwDl2dU=';

// Written by PostgreSQL 18 (CREATE ROLE … PASSWORD 'pencil', password_encryption = scram-sha-256).
const PG_PENCIL =
  'SCRAM-SHA-256$4096:yzHQqB4piPJdlfi/njGRWA==$qowQV0t1Jr+u8uBs5jQc6zIaCZqVwld4Zx2gAqZpK5Y=:zUhk0C+oMk2Cn5xynT03frx7jPmzxQ9GGrXqgmQ5EFI=';
// Same, for password "\uFB01\u2168" ("ﬁⅨ"), which SASLprep turns into "fiIX".
const PG_LIGATURE =
  'SCRAM-SHA-256$4096:P6jbzYvy9MeIKfghwDn/0A==$SRNKC0Mb9mJS4wMeGZA1cMtmaxRi5hVueq5UfxgCkUQ=:JfHAgzDwRxuFtktgGYOeNJ3cxlqoqxVhUR+b74zLUhA=';

const GARBAGE = [
  '',
  'x',
  'n,,',
  ',,,',
  '=',
  'r=',
  'c=biws',
  'p=',
  'v=',
  randomBytes(64).toString('latin1'),
  randomBytes(64).toString('base64'),
];

// Few iterations keep the tests fast; the RFC vector covers 4096.
const FAST = makeScramVerifier('pencil', RFC.salt, 64);

/** A server that has answered a real client's first message. */
function started(password = 'pencil') {
  const client = new ScramClientSession(password);
  const server = new ScramServerSession(FAST);
  const first = server.handleClientFirst(client.clientFirst());
  if (!first.ok) throw new Error(first.reason);
  return { client, server, serverFirst: first.serverFirst };
}

describe('SCRAM verifiers', () => {
  it('derives the RFC 7677 keys and formats them as Postgres does', () => {
    expect(formatScramVerifier(makeScramVerifier(RFC.password, RFC.salt, RFC.iterations))).toBe(RFC_VERIFIER);
  });

  it('parses verifiers written by Postgres and reproduces them from the password', () => {
    for (const [text, password] of [
      [PG_PENCIL, 'pencil'],
      [PG_LIGATURE, '\uFB01\u2168'],
    ] as const) {
      const v = parseScramVerifier(text);
      expect(v).toBeDefined();
      expect(v!.iterations).toBe(4096);
      expect(v!.salt).toHaveLength(16);
      expect(v!.storedKey).toHaveLength(32);
      expect(formatScramVerifier(makeScramVerifier(password, v!.salt, v!.iterations))).toBe(text);
    }
  });

  it('round-trips format and parse', () => {
    const v = makeScramVerifier('s3cret', undefined, 100);
    expect(v.salt).toHaveLength(16);
    expect(parseScramVerifier(formatScramVerifier(v))).toEqual(v);
    expect(formatScramVerifier(parseScramVerifier(PG_PENCIL)!)).toBe(PG_PENCIL);
  });

  it('rejects malformed verifiers', () => {
    const rest = PG_PENCIL.slice('SCRAM-SHA-256$4096:'.length);
    for (const bad of [
      '',
      'md5a3556571e93b0d20722ba62be61e8c2d',
      PG_PENCIL.replace('SCRAM-SHA-256', 'SCRAM-SHA-1'),
      `SCRAM-SHA-256$0:${rest}`,
      `SCRAM-SHA-256$x:${rest}`,
      `SCRAM-SHA-256$4096:$${rest.split('$')[1]}`,
      PG_PENCIL.replace('yzHQ', 'yz!Q'),
      PG_PENCIL.slice(0, -4),
      `${PG_PENCIL}$extra`,
    ]) {
      expect(parseScramVerifier(bad), bad).toBeUndefined();
    }
  });
});

describe('SCRAM client', () => {
  it('matches the RFC 7677 test vector', () => {
    const client = new ScramClientSession(RFC.password, { user: RFC.user, clientNonce: RFC.clientNonce });
    expect(client.clientFirst()).toBe(RFC.clientFirst);
    expect(client.clientFinal(RFC.serverFirst)).toBe(RFC.clientFinal);
    expect(() => client.verifyServerFinal(RFC.serverFinal)).not.toThrow();
  });

  it('sends the Postgres placeholder user by default', () => {
    expect(new ScramClientSession('pw', { clientNonce: 'abc' }).clientFirst()).toBe('n,,n=*,r=abc');
    expect(new ScramClientSession('pw').clientFirst()).toMatch(/^n,,n=\*,r=[A-Za-z0-9+/]{24}$/);
  });

  it('rejects a wrong server signature and server errors', () => {
    const client = new ScramClientSession(RFC.password, { user: RFC.user, clientNonce: RFC.clientNonce });
    client.clientFinal(RFC.serverFirst);
    expect(() => client.verifyServerFinal('v=7rriTRBi23WpRR/wtup+mMhUZUn/dB5nLTJRsjl95G4=')).toThrow(/signature/);
    expect(() => client.verifyServerFinal('e=invalid-proof')).toThrow(/invalid-proof/);
  });

  it('rejects a server nonce that does not extend the client nonce', () => {
    const client = new ScramClientSession('pencil', { clientNonce: 'abc' });
    expect(() => client.clientFinal('r=xyz123,s=W22ZaJ0SNY7soEsUEjb6gQ==,i=4096')).toThrow(/nonce/);
    expect(() => client.clientFinal('r=abc,s=W22ZaJ0SNY7soEsUEjb6gQ==,i=4096')).toThrow(/nonce/);
  });

  it('throws (and only throws) on garbage', () => {
    for (const g of GARBAGE) {
      expect(() => new ScramClientSession('pencil').clientFinal(g), JSON.stringify(g)).toThrow(/SCRAM/);
      const { client, serverFirst } = started();
      client.clientFinal(serverFirst);
      expect(() => client.verifyServerFinal(g), JSON.stringify(g)).toThrow(/SCRAM/);
    }
    expect(() => new ScramClientSession('pencil').verifyServerFinal(RFC.serverFinal)).toThrow(/SCRAM/);
  });
});

describe('SCRAM server', () => {
  it('matches the RFC 7677 test vector', () => {
    const server = new ScramServerSession(parseScramVerifier(RFC_VERIFIER)!, RFC.serverNonce);
    expect(server.handleClientFirst(RFC.clientFirst)).toEqual({ ok: true, serverFirst: RFC.serverFirst });
    expect(server.handleClientFinal(RFC.clientFinal)).toEqual({ ok: true, serverFinal: RFC.serverFinal });
  });

  it('completes a round trip with the right password', () => {
    const { client, server, serverFirst } = started('pencil');
    expect(serverFirst).toMatch(/^r=[A-Za-z0-9+/]{48},s=W22ZaJ0SNY7soEsUEjb6gQ==,i=64$/);
    const final = server.handleClientFinal(client.clientFinal(serverFirst));
    expect(final.ok).toBe(true);
    if (final.ok) expect(() => client.verifyServerFinal(final.serverFinal)).not.toThrow();
  });

  it('accepts the NFKC form of a password', () => {
    const server = new ScramServerSession(makeScramVerifier('fiIX', RFC.salt, 64));
    const client = new ScramClientSession('\uFB01\u2168');
    const first = server.handleClientFirst(client.clientFirst());
    if (!first.ok) throw new Error(first.reason);
    expect(server.handleClientFinal(client.clientFinal(first.serverFirst)).ok).toBe(true);
  });

  it('accepts "y,," and any user name in client-first, then wants c= to match it', () => {
    const server = new ScramServerSession(FAST);
    const first = server.handleClientFirst('y,,n=alice,r=abc');
    if (!first.ok) throw new Error(first.reason);
    const nonce = first.serverFirst.split(',')[0].slice('r='.length);
    const proof = Buffer.alloc(32).toString('base64');
    // "biws" is base64("n,,"); after "y,," the client must send base64("y,,").
    expect(server.handleClientFinal(`c=biws,r=${nonce},p=${proof}`)).toEqual({ ok: false, reason: 'channel binding mismatch' });
  });

  it('fails a wrong password', () => {
    const { client, server, serverFirst } = started('crayon');
    expect(server.handleClientFinal(client.clientFinal(serverFirst))).toEqual({ ok: false, reason: 'wrong password' });
  });

  it('fails a tampered nonce', () => {
    const { client, server, serverFirst } = started();
    const final = client.clientFinal(serverFirst).replace(/,r=([^,]+)/, (_m, r: string) => `,r=${r}X`);
    expect(server.handleClientFinal(final)).toEqual({ ok: false, reason: 'nonce mismatch' });
  });

  it('fails a tampered proof', () => {
    const { client, server, serverFirst } = started();
    const final = client.clientFinal(serverFirst);
    const proof = Buffer.from(final.split(',p=')[1], 'base64');
    proof[0] ^= 1;
    const tampered = `${final.split(',p=')[0]},p=${proof.toString('base64')}`;
    expect(server.handleClientFinal(tampered)).toEqual({ ok: false, reason: 'wrong password' });
  });

  it('refuses channel binding, authzid and mandatory extensions', () => {
    for (const first of ['p=tls-server-end-point,,n=*,r=abc', 'n,a=bob,n=*,r=abc', 'n,,m=ext,n=*,r=abc']) {
      const result = new ScramServerSession(FAST).handleClientFirst(first);
      expect(result.ok, first).toBe(false);
    }
    expect(new ScramServerSession(FAST).handleClientFirst('p=tls-server-end-point,,n=*,r=abc')).toEqual({
      ok: false,
      reason: 'channel binding is not supported',
    });
  });

  it('fails messages out of order', () => {
    const server = new ScramServerSession(FAST);
    expect(server.handleClientFinal(RFC.clientFinal)).toEqual({ ok: false, reason: 'unexpected client-final-message' });
    const { client, server: s2, serverFirst } = started();
    const final = client.clientFinal(serverFirst);
    expect(s2.handleClientFirst(client.clientFirst()).ok).toBe(false);
    expect(s2.handleClientFinal(final).ok).toBe(false);
  });

  it('fails (never throws) on garbage at each step', () => {
    for (const g of GARBAGE) {
      const atFirst = new ScramServerSession(FAST).handleClientFirst(g);
      expect(atFirst.ok, JSON.stringify(g)).toBe(false);
      expect(typeof (atFirst as { reason: string }).reason).toBe('string');

      const { server } = started();
      expect(server.handleClientFinal(g).ok, JSON.stringify(g)).toBe(false);
    }
  });

  it('reports malformed client-final-message', () => {
    const { server } = started();
    expect(server.handleClientFinal('x')).toEqual({ ok: false, reason: 'malformed client-final-message' });
  });
});
