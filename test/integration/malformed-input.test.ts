/**
 * Bad input never crashes the proxy or disturbs other clients: clients logged in as tenants send
 * thousands of seeded random, malformed and out-of-place protocol messages (truncated fields,
 * wrong counts, unknown types, a password message after login, FunctionCalls, COPY messages outside
 * COPY), pipelined among well-behaved clients on shared server connections. Each bad client must
 * end with an error or an answer, never hang; the others must get every answer right; pgtenant must
 * log no error. (Postgres itself answers some of it with XX000, e.g. a parameter type of OID -1.)
 */
import { Writable } from 'node:stream';
import pg from 'pg';
import pino from 'pino';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { configSchema } from '../../src/config/schema.js';
import { Proxy } from '../../src/proxy/proxy.js';
import { APP_ROLE } from '../harness/postgres.js';
import { startProxyWith } from '../harness/proxy.js';
import { RawClient, errorFields, startupPacket } from '../harness/raw-client.js';
import { SEED_ROWS, createTenantLayout, tenantConfigInput, type TenantLayout } from '../harness/tenants.js';
import { seededRandom } from '../harness/random.js';

let layout: TenantLayout;
/** Fast statements of several clients pipelined on one shared server connection. */
let proxy: Proxy;
/** Every unit on a server connection of its own. */
let exclusive: Proxy;
/** The same, with one server connection, so that each client gets the connection the one before used. */
let onePool: Proxy;
const logLines: { level: number; msg: string }[] = [];

/** Config for the layout in which raw clients log in without SCRAM (pgtenant still logs in to Postgres with the password). */
function rawClientConfig(pool: Record<string, unknown>): Record<string, unknown> {
  const input = tenantConfigInput(layout, { pool });
  (input.users as Record<string, Record<string, unknown>>)[APP_ROLE.user].auth = 'trust';
  return input;
}

beforeAll(async () => {
  layout = await createTenantLayout();
  const input = rawClientConfig({ mode: 'transaction', size: 4, queueTimeout: '10s', multiplex: true, sharedConnections: 1, shareBelow: '500ms' });
  const sink = new Writable({
    write(chunk: Buffer, _enc, done) {
      for (const line of chunk.toString().split('\n')) if (line !== '') logLines.push(JSON.parse(line) as { level: number; msg: string });
      done();
    },
  });
  proxy = await Proxy.start(configSchema.parse(input), pino({ level: 'warn' }, sink));
  exclusive = await Proxy.start(configSchema.parse(rawClientConfig({ mode: 'transaction', size: 4, queueTimeout: '10s' })), pino({ level: 'warn' }, sink));
  onePool = await startProxyWith(configSchema.parse(rawClientConfig({ mode: 'transaction', size: 1, queueTimeout: '3s' })));
});

afterAll(async () => {
  await proxy?.close();
  await exclusive?.close();
  await onePool?.close();
  await layout?.drop();
});

const cstr = (s: string): Buffer => Buffer.from(`${s}\0`);
const i16 = (n: number): Buffer => {
  const b = Buffer.alloc(2);
  b.writeInt16BE(n);
  return b;
};
const i32 = (n: number): Buffer => {
  const b = Buffer.alloc(4);
  b.writeInt32BE(n | 0);
  return b;
};
function message(type: number, body: Buffer): Buffer {
  const head = Buffer.alloc(5);
  head[0] = type;
  head.writeInt32BE(body.length + 4, 1);
  return Buffer.concat([head, body]);
}

/** Statements and names the messages are built from: valid (COPY, LISTEN, savepoints included), refused by the guard, or nonsense. */
const STATEMENTS = ['select 1', 'select count(*) from items', 'select name from items where id = $1', 'select $1::int + $2::int', "select set_config('app.tenant_id', 'r2', false)", 'set app.tenant_id = r2', 'insert into items values ($1, $2, $3)', 'selec nothing', '', 'begin', 'commit', 'discard all', 'select \u00e9\u00e8', 'copy items from stdin', 'copy (select * from items) to stdout', 'select pg_sleep(0.01)', 'listen x', 'prepare q as select 1', 'execute q', 'deallocate all', 'savepoint a', 'rollback to a', 'select 1; select 2', 'select * from items for update'];
const NAMES = ['', 's1', 'p1', 'x'.repeat(70)];

/**
 * One message, valid in form or not, with a consistent length field. `fatal`: also message types
 * Postgres closes the connection for (a password message after login, unknown types).
 */
function randomMessage(next: () => number, fatal: boolean): Buffer {
  const pick = <T>(list: readonly T[]): T => list[Math.floor(next() * list.length)];
  const int = (max: number): number => Math.floor(next() * max);
  const count = (): number => pick([0, 1, 2, 3, -1, 32767, -32768]);
  let type: number;
  let body: Buffer;
  const kinds = [0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 12, 13, ...(fatal ? [10, 11] : [])];
  switch (pick(kinds)) {
    case 0:
      type = 0x51; // Query
      body = cstr(pick(STATEMENTS));
      break;
    case 1: {
      type = 0x50; // Parse
      const n = count();
      body = Buffer.concat([cstr(pick(NAMES)), cstr(pick(STATEMENTS)), i16(n), ...Array.from({ length: Math.max(0, Math.min(n, 3)) }, () => i32(pick([0, 23, 25, -1])))]);
      break;
    }
    case 2: {
      type = 0x42; // Bind
      const formats = count();
      const params = count();
      const values = Array.from({ length: Math.max(0, Math.min(params, 3)) }, () => {
        const len = pick([-1, 0, 1, 4, 1000, -7]);
        return Buffer.concat([i32(len), Buffer.from('12345678').subarray(0, Math.max(0, Math.min(len, 8)))]);
      });
      body = Buffer.concat([cstr(pick(NAMES)), cstr(pick(NAMES)), i16(formats), ...Array.from({ length: Math.max(0, Math.min(formats, 3)) }, () => i16(pick([0, 1, 2]))), i16(params), ...values, i16(count())]);
      break;
    }
    case 3:
      type = 0x44; // Describe
      body = Buffer.concat([Buffer.from(pick(['S', 'P', 'Q'])), cstr(pick(NAMES))]);
      break;
    case 4:
      type = 0x45; // Execute
      body = Buffer.concat([cstr(pick(NAMES)), i32(pick([0, 1, -1, 2147483647]))]);
      break;
    case 5:
      type = 0x43; // Close
      body = Buffer.concat([Buffer.from(pick(['S', 'P', 'Z'])), cstr(pick(NAMES))]);
      break;
    case 6:
      type = 0x53; // Sync
      body = Buffer.alloc(0);
      break;
    case 7:
      type = 0x48; // Flush
      body = Buffer.alloc(0);
      break;
    case 8:
      type = 0x46; // FunctionCall: set_config, pg_sleep's neighbours, nonsense
      body = Buffer.concat([i32(pick([2078, 1, 2147483647, 1242])), i16(count()), i16(1), i32(pick([-1, 3])), Buffer.from('abc'), i16(0)]);
      break;
    case 9:
      type = pick([0x64, 0x63, 0x66]); // CopyData, CopyDone, CopyFail outside COPY
      body = type === 0x66 ? cstr('stop') : Buffer.from('1\tx\n');
      break;
    case 10:
      type = 0x70; // a password message after login
      body = cstr('secret');
      break;
    case 11:
      type = pick([0x00, 0x7a, 0x21, 0xff, 0x4e]); // no such message
      body = Buffer.from('zz');
      break;
    default:
      type = pick([0x51, 0x50, 0x42, 0x44, 0x45, 0x43]);
      body = Buffer.from(Array.from({ length: int(40) }, () => int(256)));
  }
  // Cut short, a byte changed, or bytes added: fields that end early or run past the message.
  const mutation = int(5);
  if (mutation === 0 && body.length > 0) body = body.subarray(0, int(body.length));
  else if (mutation === 1 && body.length > 0) {
    body = Buffer.from(body);
    body[int(body.length)] = int(256);
  } else if (mutation === 2) body = Buffer.concat([body, Buffer.from([int(256), 0, int(256)])]);
  return message(type, body);
}

/** The DataRow of `select '<marker>'` arrived, or the proxy closed the connection. */
function finished(raw: RawClient, marker: string): boolean {
  return raw.isClosed || raw.messages.some((m) => m.type === 'D' && m.body.includes(marker));
}

/** A raw client logged in to `via` as `tenant`, at its first ReadyForQuery. */
async function rawLogin(via: Proxy, tenant: string): Promise<RawClient> {
  const raw = new RawClient(via.port);
  await raw.connected();
  raw.write(startupPacket({ user: `${APP_ROLE.user}@${tenant}`, database: layout.databaseOf(tenant) }));
  await raw.waitFor('Z');
  return raw;
}

const SYNC = message(0x53, Buffer.alloc(0));
const FLUSH = message(0x48, Buffer.alloc(0));
const parse = (sql: string): Buffer => message(0x50, Buffer.concat([cstr(''), cstr(sql), i16(0)]));
const simpleQuery = (sql: string): Buffer => message(0x51, cstr(sql));

describe('extended-protocol requests and their Sync', () => {
  /** Rows the next client (tenant r2) sees on the one server connection. */
  async function nextClientSees(): Promise<unknown> {
    const c = new pg.Client({ host: '127.0.0.1', port: onePool.port, user: `${APP_ROLE.user}@r2`, password: APP_ROLE.password, database: layout.shared });
    await c.connect();
    try {
      return (await c.query('select distinct tenant_id from items')).rows;
    } finally {
      await c.end();
    }
  }

  it('a client that leaves after an error, before its Sync, does not hand the next tenant its server connection', async () => {
    // After the error Postgres ignores everything up to a Sync: given to another client as it
    // is, that client's tenant binding would be ignored too, and it would run as r1.
    const raw = await rawLogin(onePool, 'r1');
    raw.write(Buffer.concat([parse('selec nothing'), FLUSH]));
    expect(errorFields((await raw.waitFor('E')).body).C).toBe('42601');
    raw.write(message(0x58, Buffer.alloc(0)));
    await raw.closed;
    expect(await nextClientSees()).toEqual([{ tenant_id: 'r2' }]);
  });

  it('a client that leaves with statements run but not yet synced does not hand them to the next client', async () => {
    // Without a Sync, Postgres keeps their implicit transaction open: the next client's Sync would commit them.
    const raw = await rawLogin(onePool, 'r1');
    raw.write(Buffer.concat([parse("insert into items values ('r1', 1000, 'unsynced')"), message(0x42, Buffer.concat([cstr(''), cstr(''), i16(0), i16(0), i16(0)])), message(0x45, Buffer.concat([cstr(''), i32(0)])), FLUSH]));
    await raw.waitFor('C');
    raw.write(message(0x58, Buffer.alloc(0)));
    await raw.closed;
    expect(await nextClientSees()).toEqual([{ tenant_id: 'r2' }]);
    const check = new pg.Client({ host: '127.0.0.1', port: onePool.port, user: `${APP_ROLE.user}@r1`, password: APP_ROLE.password, database: layout.shared });
    await check.connect();
    try {
      expect((await check.query("select count(*)::int as n from items where name = 'unsynced'")).rows).toEqual([{ n: 0 }]);
    } finally {
      await check.end();
    }
  });

  it('ignores what the client sends after the error came back, up to its Sync, as Postgres does', async () => {
    const raw = await rawLogin(onePool, 'r1');
    // Statement a2 reaches the server with the failing Parse, before the error comes back.
    raw.write(Buffer.concat([parse('selec nothing'), message(0x50, Buffer.concat([cstr('a2'), cstr('select 2'), i16(0)])), FLUSH]));
    await raw.waitFor('E');
    // The server ignores these too: neither the Query nor the FunctionCall is answered, and
    // statement a1 is not created either.
    raw.write(Buffer.concat([simpleQuery('select 1'), message(0x46, Buffer.concat([i32(1242), i16(0), i16(0), i16(0)])), message(0x50, Buffer.concat([cstr('a1'), cstr('select 1'), i16(0)]))]));
    raw.write(Buffer.concat([SYNC, simpleQuery("select 'after'")]));
    await raw.waitUntil(() => raw.messages.filter((m) => m.type === 'Z').length >= 3, 3000);
    expect(raw.messages.slice(raw.messages.findIndex((m) => m.type === 'Z') + 1).map((m) => m.type).join('')).toBe('EZTDCZ');
    // With the raw client still connected, the one server connection went back to the pool (no
    // answer is awaited), and pgtenant knows statements a1 and a2 are not on it: a client of the
    // same tenant preparing the same statements under those names gets them prepared.
    const c = new pg.Client({ host: '127.0.0.1', port: onePool.port, user: `${APP_ROLE.user}@r1`, password: APP_ROLE.password, database: layout.shared });
    await c.connect();
    try {
      expect((await c.query({ name: 'a1', text: 'select 1' })).rows).toEqual([{ '?column?': 1 }]);
      expect((await c.query({ name: 'a2', text: 'select 2' })).rows).toEqual([{ '?column?': 2 }]);
    } finally {
      await c.end();
      raw.destroy();
    }
  });

  it('closes a client that sends a Flush with bytes in it (Postgres would fail it and ignore what follows)', async () => {
    const raw = await rawLogin(onePool, 'r1');
    raw.write(Buffer.concat([message(0x48, Buffer.from([1])), simpleQuery('select 1'), SYNC, simpleQuery('select 2')]));
    expect(await raw.waitUntil(() => raw.isClosed, 3000)).toBe(true);
    const fatal = raw.messages.find((m) => m.type === 'E');
    expect(fatal === undefined ? undefined : [errorFields(fatal.body).S, errorFields(fatal.body).C]).toEqual(['FATAL', '08P01']);
    expect(await nextClientSees()).toEqual([{ tenant_id: 'r2' }]);
  });

  it('answers a simple Query sent after an extended-protocol error as Postgres does (not at all), and then the Sync', async () => {
    const raw = await rawLogin(onePool, 'r1');
    raw.write(Buffer.concat([parse('selec nothing'), simpleQuery('select 1'), SYNC, simpleQuery("select 'after'")]));
    await raw.waitUntil(() => raw.messages.filter((m) => m.type === 'Z').length >= 3, 3000);
    // The first Z is the login's; then the error, the Sync's Z, and 'after' with its Z.
    expect(raw.messages.slice(raw.messages.findIndex((m) => m.type === 'Z') + 1).map((m) => m.type).join('')).toBe('EZTDCZ');
    raw.destroy();
    // The connection went back to the pool: the next client gets it.
    expect(await nextClientSees()).toEqual([{ tenant_id: 'r2' }]);
  });
});

describe('malformed input', () => {
  it.each([
    ['pipelined on a shared connection', () => proxy],
    ['each on a connection of its own', () => exclusive],
  ])('never crashes pgtenant, never hangs the client that sent it, and never reaches other clients (statements %s)', async (_how, target) => {
    const via = target();
    const tenants = ['r1', 'r2', 's1'];
    let stop = false;
    const bystanderErrors: unknown[] = [];
    let answered = 0;
    const bystanders = tenants.map(async (tenant) => {
      const c = new pg.Client({ host: '127.0.0.1', port: via.port, user: `${APP_ROLE.user}@${tenant}`, password: APP_ROLE.password, database: layout.databaseOf(tenant) });
      c.on('error', (err) => bystanderErrors.push(err));
      await c.connect();
      try {
        for (let i = 0; !stop; i++) {
          const id = 1 + (i % SEED_ROWS);
          const [count, name] = await Promise.all([c.query<{ n: string }>('select count(*) as n from items'), c.query<{ name: string }>('select name from items where id = $1', [id])]);
          expect(count.rows).toEqual([{ n: String(SEED_ROWS) }]);
          expect(name.rows).toEqual([{ name: `${tenant}-${id}` }]);
          answered++;
        }
      } catch (err) {
        bystanderErrors.push(err);
      } finally {
        await c.end().catch(() => undefined);
      }
    });

    const next = seededRandom(20261203);
    const outcomes = { closed: 0, answered: 0 };
    try {
      for (let round = 0; round < 40; round++) {
        const clients = tenants.map((tenant, k) => {
          const raw = new RawClient(via.port);
          const marker = `fuzz-done-${round}-${k}`;
          const messages = Array.from({ length: 40 }, () => randomMessage(next, k === 0));
          return (async () => {
            await raw.connected();
            raw.write(startupPacket({ user: `${APP_ROLE.user}@${tenant}`, database: layout.databaseOf(tenant) }));
            await raw.waitFor('Z');
            // In a few writes, so that units are cut at different places.
            for (let i = 0; i < messages.length; i += 8) raw.write(Buffer.concat(messages.slice(i, i + 8)));
            // A random 'begin' may have left it in a (failed) transaction.
            raw.write(Buffer.concat([message(0x53, Buffer.alloc(0)), message(0x51, cstr(`rollback; select '${marker}'`))]));
            const done = await raw.waitUntil(() => finished(raw, marker), 15_000);
            const closed = raw.isClosed;
            raw.destroy();
            return { done, closed, seen: raw.messages.map((m) => m.type).join('') };
          })();
        });
        for (const r of await Promise.all(clients)) {
          expect(r.done, `a client hung after its malformed messages; it got ${r.seen}`).toBe(true);
          if (r.closed) outcomes.closed++;
          else outcomes.answered++;
        }
      }
    } finally {
      stop = true;
      await Promise.all(bystanders);
    }

    expect(bystanderErrors).toEqual([]);
    expect(answered).toBeGreaterThan(0);
    expect(logLines.filter((l) => l.level >= 50)).toEqual([]);
    // Both endings happen: the input is neither all fatal nor all harmless.
    expect(outcomes.closed).toBeGreaterThan(0);
    expect(outcomes.answered).toBeGreaterThan(0);

    // And pgtenant still logs clients in and keeps tenants apart.
    const after = new pg.Client({ host: '127.0.0.1', port: via.port, user: `${APP_ROLE.user}@r3`, password: APP_ROLE.password, database: layout.shared });
    await after.connect();
    try {
      expect((await after.query<{ tenant_id: string }>('select distinct tenant_id from items')).rows).toEqual([{ tenant_id: 'r3' }]);
    } finally {
      await after.end();
    }
  });
});
