/**
 * Bad input before login never crashes the proxy or disturbs other clients: seeded random startup
 * packets (unknown versions, odd parameters, truncated or oversized packets, SSL and GSS requests
 * followed by garbage, cancel requests for keys nobody has) and authentication answers (garbage
 * SASL, SCRAM messages with missing or wrong attributes, wrong MD5 and cleartext passwords, JWTs
 * that are not) for users of every authentication method. Each connection must end refused or
 * waiting for more, never with a login; pgtenant must log no error, and keep serving a client that
 * logs in properly.
 */
import { Writable } from 'node:stream';
import pg from 'pg';
import pino from 'pino';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { configSchema } from '../../src/config/schema.js';
import { Proxy } from '../../src/proxy/proxy.js';
import { APP_ROLE } from '../harness/postgres.js';
import { testConfigInput, viaProxy } from '../harness/proxy.js';
import { RawClient, errorFields } from '../harness/raw-client.js';
import { seededRandom } from '../harness/random.js';

let proxy: Proxy;
const logLines: { level: number; msg: string }[] = [];

const USERS = ['fz_md5', 'fz_clear', 'fz_jwt', APP_ROLE.user, `${APP_ROLE.user}@r1`, 'nobody'];

beforeAll(async () => {
  const base = testConfigInput();
  const input = {
    ...base,
    users: {
      ...(base.users as Record<string, unknown>),
      fz_md5: { password: 'md5-secret', auth: 'md5' },
      fz_clear: { password: 'clear-secret', auth: 'cleartext' },
      fz_jwt: { auth: 'jwt' },
    },
    jwt: { secret: 'a-secret-of-at-least-16-chars' },
    tenancy: { placements: { row: { database: APP_ROLE.database } }, default: 'row', unknown: 'default' },
  };
  const sink = new Writable({
    write(chunk: Buffer, _enc, done) {
      for (const line of chunk.toString().split('\n')) if (line !== '') logLines.push(JSON.parse(line) as { level: number; msg: string });
      done();
    },
  });
  proxy = await Proxy.start(configSchema.parse(input), pino({ level: 'warn' }, sink));
});

afterAll(async () => {
  await proxy?.close();
});

const i32 = (n: number): Buffer => {
  const b = Buffer.alloc(4);
  b.writeInt32BE(n | 0);
  return b;
};
const untyped = (body: Buffer): Buffer => Buffer.concat([i32(body.length + 4), body]);
const typed = (type: number, body: Buffer): Buffer => {
  const head = Buffer.alloc(5);
  head[0] = type;
  head.writeInt32BE(body.length + 4, 1);
  return Buffer.concat([head, body]);
};
const pairs = (kv: [string, string][]): Buffer => Buffer.from(kv.map(([k, v]) => `${k}\0${v}\0`).join('') + '\0');

/** What one connection sends: packets of the startup phase, then answers to authentication. */
function randomLogin(next: () => number): Buffer[] {
  const pick = <T>(list: readonly T[]): T => list[Math.floor(next() * list.length)];
  const int = (max: number): number => Math.floor(next() * max);
  const garbage = (n: number): Buffer => Buffer.from(Array.from({ length: n }, () => int(256)));
  const out: Buffer[] = [];
  const params: [string, string][] = [];
  if (next() < 0.9) params.push(['user', pick(USERS)]);
  if (next() < 0.5) params.push(['database', pick([APP_ROLE.database, 'pgtenant', 'nope', ''])]);
  if (next() < 0.3) params.push(['options', pick(['-c statement_timeout=5', '-c', '--', '-c pgtenant.tenant=r2', 'x'.repeat(300), '-c a=b\\'])]);
  if (next() < 0.2) params.push([pick(['_pq_.x', 'application_name', 'replication', 'client_encoding', 'search_path']), pick(['', 'on', 'LATIN1', 'x'.repeat(500)])]);
  switch (int(8)) {
    case 0:
      out.push(untyped(Buffer.concat([i32(80877103)]))); // SSLRequest, then plaintext anyway
      break;
    case 1:
      out.push(untyped(Buffer.concat([i32(80877104)]))); // GSSENCRequest
      break;
    case 2:
      out.push(untyped(Buffer.concat([i32(80877102), i32(int(2 ** 31)), i32(int(2 ** 31))]))); // CancelRequest nobody owns
      break;
    case 3:
      out.push(untyped(Buffer.concat([i32(pick([196608, 196610, 131072, 262144, 0])), pairs(params)])));
      break;
    case 4:
      out.push(Buffer.concat([i32(pick([0, 3, 7, 10_001, -1])), garbage(int(20))])); // impossible lengths
      return out;
    case 5: {
      const body = Buffer.concat([i32(196608), pairs(params)]);
      out.push(untyped(body.subarray(0, Math.max(4, int(body.length))))); // cut short, length consistent
      break;
    }
    default:
      break;
  }
  out.push(untyped(Buffer.concat([i32(196608), pairs(params)])));
  for (let k = int(4); k > 0; k--) {
    switch (int(6)) {
      case 0: {
        const first = pick(['n,,n=,r=abc', 'y,,n=,r=', 'p=tls-server-end-point,,n=,r=x', 'n,,r=', 'garbage', '', 'n,,n=,r=' + 'a'.repeat(2000)]);
        const mech = pick(['SCRAM-SHA-256', 'SCRAM-SHA-256-PLUS', 'PLAIN', '']);
        out.push(typed(0x70, Buffer.concat([Buffer.from(`${mech}\0`), i32(pick([first.length, -1, first.length + 5, 0])), Buffer.from(first)])));
        break;
      }
      case 1:
        out.push(typed(0x70, Buffer.from(pick(['c=biws,r=abc,p=AAAA', 'c=,r=,p=', 'r=x', 'c=biws,r=abc', 'p=' + 'A'.repeat(100)]))));
        break;
      case 2:
        out.push(typed(0x70, Buffer.from(`${pick(['md5' + '0'.repeat(32), 'clear-secret-not', 'eyJhbGciOiJub25lIn0.e30.', 'a.b.c', ''])}\0`)));
        break;
      case 3:
        out.push(typed(0x70, garbage(int(60))));
        break;
      case 4:
        out.push(typed(pick([0x51, 0x58, 0x53, 0x00]), garbage(int(10)))); // not a password answer
        break;
      default:
        out.push(garbage(int(12)));
    }
  }
  return out;
}

describe('malformed login', () => {
  it('never crashes pgtenant, never logs anyone in, and leaves other clients alone', async () => {
    const next = seededRandom(20261204);
    let refused = 0;
    for (let round = 0; round < 25; round++) {
      const attempts = Array.from({ length: 8 }, async () => {
        const raw = new RawClient(proxy.port);
        await raw.connected();
        for (const bytes of randomLogin(next)) raw.write(bytes);
        // Refused (an error, then the connection closed) or waiting for more: never logged in.
        await raw.waitUntil(() => raw.isClosed, 300);
        const loggedIn = raw.messages.some((m) => m.type === 'Z');
        const error = raw.messages.find((m) => m.type === 'E');
        raw.destroy();
        return { loggedIn, code: error === undefined ? undefined : errorFields(error.body).C };
      });
      const legit = new pg.Client(viaProxy(proxy, `${APP_ROLE.user}@r1`));
      await legit.connect();
      try {
        expect((await legit.query<{ n: number }>('select 1 as n')).rows).toEqual([{ n: 1 }]);
      } finally {
        await legit.end();
      }
      for (const a of await Promise.all(attempts)) {
        expect(a.loggedIn).toBe(false);
        if (a.code !== undefined) refused++;
      }
    }
    expect(refused).toBeGreaterThan(100);
    expect(logLines.filter((l) => l.level >= 50)).toEqual([]);
  });
});
