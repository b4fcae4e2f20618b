import { afterEach, describe, expect, it } from 'vitest';
import pg from 'pg';
import type { Proxy } from '../../src/proxy/proxy.js';
import { APP_ROLE, adminClient, createDatabase, uniqueName } from '../harness/postgres.js';
import { startProxy, viaProxy } from '../harness/proxy.js';

const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms));

/** Things to close after each test, newest first. */
let cleanups: (() => Promise<unknown>)[] = [];
afterEach(async () => {
  for (const fn of cleanups.reverse()) await fn().catch(() => undefined);
  cleanups = [];
});

async function connect(proxy: Proxy, database: string): Promise<pg.Client> {
  const client = new pg.Client(viaProxy(proxy, APP_ROLE.user, APP_ROLE.password, database));
  // A FATAL after the client is idle (e.g. shutdown) must not crash the worker.
  client.on('error', () => undefined);
  await client.connect();
  cleanups.push(() => client.end());
  return client;
}

async function dropDatabase(name: string): Promise<void> {
  const admin = await adminClient();
  try {
    await admin.query(`drop database if exists ${admin.escapeIdentifier(name)} with (force)`);
  } finally {
    await admin.end();
  }
}

/** Polls how many server connections the app role holds on `db`, every ~20 ms, until stopped. */
function sampleServerConnections(db: string): { stop: () => Promise<{ max: number; samples: number }> } {
  let running = true;
  let max = 0;
  let samples = 0;
  const done = (async () => {
    const admin = await adminClient();
    try {
      while (running) {
        const { rows } = await admin.query<{ n: number }>(
          `select count(*)::int as n from pg_stat_activity where datname = $1 and usename = $2`,
          [db, APP_ROLE.user],
        );
        max = Math.max(max, rows[0].n);
        samples++;
        await sleep(20);
      }
    } finally {
      await admin.end();
    }
  })();
  return {
    stop: async () => {
      running = false;
      await done;
      return { max, samples };
    },
  };
}

describe('transaction pooling', () => {
  it('serves 64 clients × 200 transactions with named prepared statements on 4 server connections', async () => {
    const db = await createDatabase(uniqueName('pool'), APP_ROLE.user);
    cleanups.push(() => dropDatabase(db));
    const proxy = await startProxy({ pool: { mode: 'transaction', size: 4, queueTimeout: '30s' } });
    cleanups.push(() => proxy.close());

    const setup = await connect(proxy, db);
    await setup.query('create table items (client int not null, seq int not null, payload text not null, primary key (client, seq))');

    const CLIENTS = 64;
    const ROUNDS = 200;
    const sampler = sampleServerConnections(db);
    const mismatches: string[] = [];
    const workers = Array.from({ length: CLIENTS }, async (_, c) => {
      const client = await connect(proxy, db);
      for (let i = 0; i < ROUNDS; i++) {
        const payload = `c${c}-i${i}-${'x'.repeat(i % 17)}`;
        if (i % 2 === 0) {
          // A transaction: BEGIN; insert and read back via named statements; COMMIT.
          await client.query('BEGIN');
          const ins = await client.query({
            name: 'ins',
            text: 'insert into items (client, seq, payload) values ($1, $2, $3) returning seq',
            values: [c, i, payload],
          });
          if (ins.rowCount !== 1 || ins.rows[0].seq !== i) mismatches.push(`insert c${c} i${i}: ${JSON.stringify(ins.rows)}`);
          const sel = await client.query({
            name: 'sel',
            text: 'select payload, txid_current_if_assigned() is not null as in_tx from items where client = $1 and seq = $2',
            values: [c, i],
          });
          if (sel.rows.length !== 1 || sel.rows[0].payload !== payload || sel.rows[0].in_tx !== true) {
            mismatches.push(`select c${c} i${i}: ${JSON.stringify(sel.rows)}`);
          }
          await client.query('COMMIT');
        } else {
          // Autocommit named statements, plus one that computes from its parameters.
          const ins = await client.query({
            name: 'ins',
            text: 'insert into items (client, seq, payload) values ($1, $2, $3) returning seq',
            values: [c, i, payload],
          });
          if (ins.rowCount !== 1 || ins.rows[0].seq !== i) mismatches.push(`insert c${c} i${i}: ${JSON.stringify(ins.rows)}`);
          const calc = await client.query({ name: 'calc', text: 'select $1::int * 1000 + $2::int as v, $3::text as echo', values: [c, i, payload] });
          if (calc.rows[0]?.v !== c * 1000 + i || calc.rows[0]?.echo !== payload) mismatches.push(`calc c${c} i${i}: ${JSON.stringify(calc.rows)}`);
          const cnt = await client.query({ name: 'count', text: 'select count(*)::int as n from items where client = $1', values: [c] });
          if (cnt.rows[0]?.n !== i + 1) mismatches.push(`count c${c} i${i}: ${JSON.stringify(cnt.rows)}`);
        }
      }
    });
    const results = await Promise.allSettled(workers);
    const { max, samples } = await sampler.stop();

    const failures = results.filter((r): r is PromiseRejectedResult => r.status === 'rejected').map((r) => String(r.reason));
    expect(failures).toEqual([]);
    expect(mismatches.slice(0, 10)).toEqual([]);

    const { rows } = await setup.query<{ n: number; clients: number }>('select count(*)::int as n, count(distinct client)::int as clients from items');
    expect(rows[0]).toEqual({ n: CLIENTS * ROUNDS, clients: CLIENTS });

    expect(samples).toBeGreaterThan(10);
    expect(max).toBeGreaterThan(0);
    expect(max).toBeLessThanOrEqual(4);

    const pools = proxy.poolList.filter((p) => p.key.includes(`/${db}/`));
    expect(pools).toHaveLength(1);
    const stats = pools[0].stats;
    expect(stats.total).toBeGreaterThan(0);
    expect(stats.total).toBeLessThanOrEqual(4);
    expect(stats.waiting).toBe(0);
    expect(stats.connecting).toBe(0);
    // Every client is between transactions: all server connections are back in the pool.
    expect(stats.active).toBe(0);
    expect(stats.idle).toBe(stats.total);
  });

  it('fails a client that waits longer than queueTimeout with 57014, then serves it again', async () => {
    const db = await createDatabase(uniqueName('pool'), APP_ROLE.user);
    cleanups.push(() => dropDatabase(db));
    const proxy = await startProxy({ pool: { mode: 'transaction', size: 1, queueTimeout: '300ms' } });
    cleanups.push(() => proxy.close());

    const holder = await connect(proxy, db);
    const waiter = await connect(proxy, db);
    await holder.query('BEGIN');
    await holder.query('select 1');

    const err = await waiter.query('select 2 as two').then(
      () => undefined,
      (e: unknown) => e as pg.DatabaseError,
    );
    expect(err).toBeDefined();
    expect(err?.code).toBe('57014');
    expect(err?.message).toMatch(/pool/);

    await holder.query('COMMIT');
    const again = await waiter.query('select 2 as two');
    expect(again.rows).toEqual([{ two: 2 }]);
    // The holder is fine too.
    expect((await holder.query('select 3 as three')).rows).toEqual([{ three: 3 }]);
  });

  it('refuses the client beyond listen.maxClients with 53300', async () => {
    const proxy = await startProxy({ listen: { host: '127.0.0.1', port: 0, maxClients: 2 } });
    cleanups.push(() => proxy.close());

    const first = await connect(proxy, APP_ROLE.database);
    const second = await connect(proxy, APP_ROLE.database);
    const third = new pg.Client(viaProxy(proxy));
    third.on('error', () => undefined);
    const err = await third.connect().then(
      () => undefined,
      (e: unknown) => e as pg.DatabaseError,
    );
    if (err === undefined) cleanups.push(() => third.end());
    expect(err?.code).toBe('53300');

    // The two admitted clients keep working.
    expect((await first.query('select 1 as one')).rows).toEqual([{ one: 1 }]);
    expect((await second.query('select 2 as two')).rows).toEqual([{ two: 2 }]);
  });
});
