import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import pg from 'pg';
import postgres from 'postgres';
import type { Proxy } from '../../src/proxy/proxy.js';
import { runPsql, type RunResult } from '../harness/binaries.js';
import { APP_ROLE, backend, uniqueName } from '../harness/postgres.js';
import { startProxy, viaProxy } from '../harness/proxy.js';

/**
 * psql, node-postgres and postgres.js against the proxy in transaction mode (pool size 4):
 * simple and parameterized queries, named prepared statements over several server connections,
 * transactions, errors inside transactions, scripts, and session parameters.
 */

const POOL_SIZE = 4;

let proxy: Proxy;
/** Direct (not proxied) connection as the app role, for setup and for checking what is really stored. */
let direct: pg.Client;
let table: string;
/** Server default TimeZone, as a fresh direct connection sees it. */
let defaultTz: string;
const opened: pg.Client[] = [];
const sqls: postgres.Sql[] = [];

async function pgClient(): Promise<pg.Client> {
  const c = new pg.Client(viaProxy(proxy));
  await c.connect();
  opened.push(c);
  return c;
}

function pgjs(options: postgres.Options<Record<string, postgres.PostgresType>> = {}): postgres.Sql {
  const o = viaProxy(proxy);
  const sql = postgres({ host: o.host, port: o.port, user: o.user, password: o.password, database: o.database, max: 1, onnotice: () => undefined, ...options });
  sqls.push(sql);
  return sql;
}

function psql(args: string[], input?: string): Promise<RunResult> {
  return runPsql(['-X', '-q', '-h', '127.0.0.1', '-p', String(proxy.port), '-U', APP_ROLE.user, '-d', APP_ROLE.database, ...args], {
    env: { PGPASSWORD: APP_ROLE.password, PGSSLMODE: 'disable', PGCONNECT_TIMEOUT: '5' },
    input,
  });
}

/** Rows stored in the test table under `tag`, read directly from Postgres. */
async function storedIds(tag: string): Promise<number[]> {
  const r = await direct.query<{ id: number }>(`select id from ${table} where tag = $1 order by id`, [tag]);
  return r.rows.map((row) => row.id);
}

/**
 * Runs `fn` while the first `k` holders each keep one server connection busy in an open transaction.
 * Pool connections come back last-in-first-out, so varying k sends the next statement of another
 * client to a different server connection.
 */
async function whileHeld<T>(holders: pg.Client[], k: number, fn: () => Promise<T>): Promise<T> {
  for (let i = 0; i < k; i++) await holders[i].query('begin; select 1');
  try {
    return await fn();
  } finally {
    for (let i = 0; i < k; i++) await holders[i].query('commit');
  }
}

/** Keeps `n` clients issuing short transactions until the returned stop() is awaited. */
async function backgroundLoad(n: number): Promise<() => Promise<number>> {
  const clients = await Promise.all(Array.from({ length: n }, () => pgClient()));
  let running = true;
  let count = 0;
  const loops = clients.map(async (c) => {
    while (running) {
      await c.query('select pg_sleep(0.002)');
      count++;
    }
  });
  return async () => {
    running = false;
    await Promise.all(loops);
    return count;
  };
}

describe('clients through the proxy (transaction mode)', () => {
  beforeAll(async () => {
    proxy = await startProxy();
    const be = backend();
    direct = new pg.Client({ host: be.host, port: be.port, user: APP_ROLE.user, password: APP_ROLE.password, database: APP_ROLE.database });
    await direct.connect();
    table = uniqueName('clients');
    await direct.query(`create table ${table} (id int not null, tag text not null, v text)`);
    defaultTz = (await direct.query<{ tz: string }>('select current_setting($1) as tz', ['TimeZone'])).rows[0].tz;
  });

  afterAll(async () => {
    await Promise.allSettled(sqls.map((s) => s.end({ timeout: 1 })));
    await Promise.allSettled(opened.map((c) => c.end()));
    if (direct) {
      await direct.query(`drop table if exists ${table}`).catch(() => undefined);
      await direct.end();
    }
    await proxy?.close();
  });

  // ---------------- psql ----------------

  describe('psql', () => {
    it('runs simple queries', async () => {
      const r = await psql(['-At', '-c', "select current_user, 40 + 2, 'a' || 'b'"]);
      expect(r.stderr).toBe('');
      expect(r.code).toBe(0);
      expect(r.stdout.trim()).toBe('app|42|ab');
    });

    it('runs a query with client-side variables (\\set, :var and :\'var\')', async () => {
      const r = await psql(['-At', '-v', 'ON_ERROR_STOP=1'], "\\set n 41\n\\set word 'it''s'\nselect :n + 1, :'word', length(:'word');\n");
      expect(r.stderr).toBe('');
      expect(r.code).toBe(0);
      expect(r.stdout.trim()).toBe("42|it's|4");
    });

    it('prepares and executes a statement inside one transaction', async () => {
      const r = await psql(['-At', '-v', 'ON_ERROR_STOP=1', '-c', 'begin; prepare p1(int) as select $1 * 2; execute p1(21); deallocate p1; commit;']);
      expect(r.stderr).toBe('');
      expect(r.code).toBe(0);
      expect(r.stdout.trim()).toBe('42');
    });

    it('commits and rolls back transactions', async () => {
      const tag = uniqueName('psql_tx');
      const r = await psql(['-At', '-v', 'ON_ERROR_STOP=1'], [
        'begin;',
        `insert into ${table} (id, tag) values (1, '${tag}');`,
        `insert into ${table} (id, tag) values (2, '${tag}');`,
        'commit;',
        'begin;',
        `insert into ${table} (id, tag) values (3, '${tag}');`,
        'rollback;',
        `select count(*) from ${table} where tag = '${tag}';`,
      ].join('\n'));
      expect(r.stderr).toBe('');
      expect(r.code).toBe(0);
      expect(r.stdout.trim()).toBe('2');
      expect(await storedIds(tag)).toEqual([1, 2]);
    });

    it('reports 22012 then 25P02 inside a failed transaction, and recovers after ROLLBACK', async () => {
      const tag = uniqueName('psql_err');
      const r = await psql(['-At'], [
        '\\set VERBOSITY verbose',
        'begin;',
        `insert into ${table} (id, tag) values (1, '${tag}');`,
        'select 1/0;',
        "select 'not run';",
        'rollback;',
        "select 'after ' || 'rollback';",
      ].join('\n'));
      expect(r.stderr).toMatch(/ERROR:\s+22012: division by zero/);
      expect(r.stderr).toMatch(/ERROR:\s+25P02: current transaction is aborted/);
      expect(r.stdout).not.toContain('not run');
      expect(r.stdout.trim()).toBe('after rollback');
      expect(await storedIds(tag)).toEqual([]);
    });

    it('runs a multi-statement script with ON_ERROR_STOP=1 and \\set', async () => {
      const tag = uniqueName('psql_script');
      const script = [
        `\\set tag '${tag}'`,
        '\\set n 100',
        `insert into ${table} (id, tag) select g, :'tag' from generate_series(1, :n) g;`,
        `update ${table} set v = 'v' || id where tag = :'tag';`,
        `select count(*), sum(id), count(v) from ${table} where tag = :'tag' \\gset r_`,
        "\\echo rows=:r_count sum=:r_sum",
        `delete from ${table} where tag = :'tag' and id > 90;`,
        `select count(*) from ${table} where tag = :'tag';`,
      ].join('\n');
      const r = await psql(['-At', '-v', 'ON_ERROR_STOP=1'], script);
      expect(r.stderr).toBe('');
      expect(r.code).toBe(0);
      expect(r.stdout.trim().split('\n')).toEqual(['rows=100 sum=5050', '90']);
      expect((await storedIds(tag)).length).toBe(90);

      // ON_ERROR_STOP: the script stops at the first error with exit code 3.
      const failing = [
        `\\set tag '${tag}'`,
        `insert into ${table} (id, tag) values (1000, :'tag');`,
        'select 1/0;',
        `insert into ${table} (id, tag) values (1001, :'tag');`,
      ].join('\n');
      const f = await psql(['-At', '-v', 'ON_ERROR_STOP=1'], failing);
      expect(f.code).toBe(3);
      expect(f.stderr).toContain('division by zero');
      const ids = await storedIds(tag);
      expect(ids).toContain(1000);
      expect(ids).not.toContain(1001);
    });

    it('keeps SET TimeZone for later statements while other clients keep the pool busy', async () => {
      const stop = await backgroundLoad(3);
      let r: RunResult;
      try {
        const lines = ["SET TimeZone = 'Asia/Tokyo';"];
        for (let i = 0; i < 30; i++) lines.push("select current_setting('TimeZone'), pg_sleep(0.005);");
        r = await psql(['-At', '-F', ' ', '-v', 'ON_ERROR_STOP=1'], lines.join('\n'));
      } finally {
        expect(await stop()).toBeGreaterThan(0);
      }
      expect(r.stderr).toBe('');
      expect(r.code).toBe(0);
      const shown = r.stdout.trim().split('\n').map((l) => l.trim());
      expect(shown).toHaveLength(30);
      expect(new Set(shown)).toEqual(new Set(['Asia/Tokyo']));

      // Another psql afterwards gets the server default.
      const other = await psql(['-At', '-c', 'show timezone']);
      expect(other.stdout.trim()).toBe(defaultTz);
    });
  });

  // ---------------- node-postgres ----------------

  describe('node-postgres', () => {
    it('runs simple and parameterized queries', async () => {
      const c = await pgClient();
      const simple = await c.query("select current_user as u, 'x' || 'y' as s");
      expect(simple.rows).toEqual([{ u: 'app', s: 'xy' }]);
      const multi = await c.query('select 1 as a; select 2 as b');
      expect((multi as unknown as pg.QueryResult[]).map((x) => x.rows)).toEqual([[{ a: 1 }], [{ b: 2 }]]);
      const p = await c.query('select $1::int + $2::int as n, $3::text as t, $4::text is null as isnull', [40, 2, "it's", null]);
      expect(p.rows).toEqual([{ n: 42, t: "it's", isnull: true }]);
    });

    it('reuses a named prepared statement 50 times across several server connections', async () => {
      const c = await pgClient();
      const other = await pgClient();
      const holders = await Promise.all(Array.from({ length: POOL_SIZE - 1 }, () => pgClient()));
      const stop = await backgroundLoad(2);
      const pids = new Set<number>();
      try {
        for (let i = 0; i < 50; i++) {
          const r = await whileHeld(holders, i % POOL_SIZE, async () => {
            // Another client uses the same statement name for a different query at the same time.
            const [mine, theirs] = await Promise.all([
              c.query<{ n: number; pid: number; prepared: string }>({
                name: 'q1',
                text: "select $1::int * 2 as n, pg_backend_pid() as pid, (select count(*) from pg_prepared_statements where name like 'pgt\\_%') as prepared",
                values: [i],
              }),
              other.query<{ s: string }>({ name: 'q1', text: "select 'other-' || $1::text as s", values: [String(i)] }),
            ]);
            expect(theirs.rows).toEqual([{ s: `other-${i}` }]);
            return mine;
          });
          expect(r.rows[0].n).toBe(i * 2);
          expect(Number(r.rows[0].prepared)).toBeGreaterThanOrEqual(1);
          pids.add(r.rows[0].pid);
        }
      } finally {
        expect(await stop()).toBeGreaterThan(0);
      }
      expect(pids.size).toBeGreaterThanOrEqual(3);
      expect(pids.size).toBeLessThanOrEqual(POOL_SIZE);
    });

    it('commits and rolls back transactions', async () => {
      const c = await pgClient();
      const tag = uniqueName('pg_tx');
      await c.query('begin');
      await c.query(`insert into ${table} (id, tag) values ($1, $2)`, [1, tag]);
      await c.query(`insert into ${table} (id, tag) values ($1, $2)`, [2, tag]);
      await c.query('commit');
      await c.query('begin');
      await c.query(`insert into ${table} (id, tag) values ($1, $2)`, [3, tag]);
      // Not yet visible to others.
      expect(await storedIds(tag)).toEqual([1, 2]);
      await c.query('rollback');
      expect(await storedIds(tag)).toEqual([1, 2]);
      const seen = await c.query(`select count(*)::int as n from ${table} where tag = $1`, [tag]);
      expect(seen.rows).toEqual([{ n: 2 }]);
    });

    it('reports 22012 then 25P02 inside a failed transaction, and recovers after ROLLBACK', async () => {
      const c = await pgClient();
      const tag = uniqueName('pg_err');
      await c.query('begin');
      await c.query(`insert into ${table} (id, tag) values (1, $1)`, [tag]);
      await expect(c.query('select 1/0')).rejects.toMatchObject({ code: '22012' });
      await expect(c.query('select 1')).rejects.toMatchObject({ code: '25P02' });
      await expect(c.query('select $1::int', [1])).rejects.toMatchObject({ code: '25P02' });
      await c.query('rollback');
      expect((await c.query('select $1::int + 1 as n', [1])).rows).toEqual([{ n: 2 }]);
      expect(await storedIds(tag)).toEqual([]);
      // The same with an error in the extended protocol and a named statement.
      await c.query('begin');
      await expect(c.query({ name: 'div', text: 'select 1 / $1::int as r', values: [0] })).rejects.toMatchObject({ code: '22012' });
      await expect(c.query({ name: 'div', text: 'select 1 / $1::int as r', values: [1] })).rejects.toMatchObject({ code: '25P02' });
      await c.query('rollback');
      expect((await c.query({ name: 'div', text: 'select 1 / $1::int as r', values: [1] })).rows).toEqual([{ r: 1 }]);
    });

    it('keeps SET TimeZone on other server connections and does not leak it to another client', async () => {
      const a = await pgClient();
      const b = await pgClient();
      const holders = await Promise.all(Array.from({ length: POOL_SIZE - 1 }, () => pgClient()));
      await a.query("SET TimeZone = 'Asia/Tokyo'");
      const stop = await backgroundLoad(1);
      const pids = new Set<number>();
      const seenByA: string[] = [];
      const seenByB: string[] = [];
      try {
        for (let i = 0; i < 40; i++) {
          await whileHeld(holders, i % POOL_SIZE, async () => {
            const ra = await a.query<{ tz: string; pid: number }>('show timezone; select pg_backend_pid() as pid');
            const [showA, pidA] = ra as unknown as pg.QueryResult[];
            seenByA.push(showA.rows[0].TimeZone);
            pids.add(pidA.rows[0].pid);
            const rb = await b.query<{ tz: string }>('select current_setting($1) as tz', ['TimeZone']);
            seenByB.push(rb.rows[0].tz);
          });
        }
      } finally {
        expect(await stop()).toBeGreaterThan(0);
      }
      expect(pids.size).toBeGreaterThanOrEqual(3);
      expect(new Set(seenByA)).toEqual(new Set(['Asia/Tokyo']));
      expect(new Set(seenByB)).toEqual(new Set([defaultTz]));
      // A brand-new client does not see it either, whichever connection it lands on.
      for (let i = 0; i < POOL_SIZE; i++) {
        const fresh = await whileHeld(holders, i, async () => {
          const c = new pg.Client(viaProxy(proxy));
          await c.connect();
          try {
            return (await c.query<{ tz: string }>('select current_setting($1) as tz', ['TimeZone'])).rows[0].tz;
          } finally {
            await c.end();
          }
        });
        expect(fresh).toBe(defaultTz);
      }
    });
  });

  // ---------------- postgres.js ----------------

  describe('postgres.js', () => {
    it('runs simple queries and tagged-template parameters', async () => {
      const sql = pgjs();
      const simple = await sql.unsafe("select current_user as u, 'x' || 'y' as s");
      expect([...simple]).toEqual([{ u: 'app', s: 'xy' }]);
      const n = 40;
      const word = "it's";
      const r = await sql`select ${n}::int + 2 as n, ${word}::text as t, ${null}::text is null as isnull`;
      expect([...r]).toEqual([{ n: 42, t: "it's", isnull: true }]);
    });

    it('reuses prepared statements (prepare: true) across several server connections', async () => {
      const sql = pgjs({ prepare: true });
      const otherSql = pgjs({ prepare: true });
      const holders = await Promise.all(Array.from({ length: POOL_SIZE - 1 }, () => pgClient()));
      const stop = await backgroundLoad(2);
      const pids = new Set<number>();
      try {
        for (let i = 0; i < 50; i++) {
          const [mine, theirs] = await whileHeld(holders, i % POOL_SIZE, () =>
            Promise.all([
              sql`select ${i}::int * 2 as n, pg_backend_pid() as pid, (select count(*) from pg_prepared_statements where name like 'pgt\_%')::int as prepared`,
              otherSql`select 'other-' || ${String(i)}::text as s`,
            ]),
          );
          expect(mine[0].n).toBe(i * 2);
          expect(mine[0].prepared).toBeGreaterThanOrEqual(1);
          expect([...theirs]).toEqual([{ s: `other-${i}` }]);
          pids.add(mine[0].pid as number);
        }
      } finally {
        expect(await stop()).toBeGreaterThan(0);
      }
      expect(pids.size).toBeGreaterThanOrEqual(3);
    });

    it('commits and rolls back transactions', async () => {
      const sql = pgjs();
      const tag = uniqueName('pgjs_tx');
      await sql.begin(async (tx) => {
        await tx`insert into ${tx(table)} (id, tag) values (1, ${tag})`;
        await tx`insert into ${tx(table)} (id, tag) values (2, ${tag})`;
      });
      expect(await storedIds(tag)).toEqual([1, 2]);
      await expect(
        sql.begin(async (tx) => {
          await tx`insert into ${tx(table)} (id, tag) values (3, ${tag})`;
          throw new Error('roll me back');
        }),
      ).rejects.toThrow('roll me back');
      expect(await storedIds(tag)).toEqual([1, 2]);

      // Plain BEGIN / COMMIT / ROLLBACK statements on a reserved connection.
      const r = await sql.reserve();
      try {
        await r`begin`;
        await r`insert into ${r(table)} (id, tag) values (4, ${tag})`;
        await r`commit`;
        await r`begin`;
        await r`insert into ${r(table)} (id, tag) values (5, ${tag})`;
        await r`rollback`;
      } finally {
        r.release();
      }
      expect(await storedIds(tag)).toEqual([1, 2, 4]);
    });

    it('reports 22012 then 25P02 inside a failed transaction, and recovers after ROLLBACK', async () => {
      const sql = pgjs();
      const tag = uniqueName('pgjs_err');
      const r = await sql.reserve();
      try {
        await r`begin`;
        await r`insert into ${r(table)} (id, tag) values (1, ${tag})`;
        await expect(r`select 1 / ${0}::int`).rejects.toMatchObject({ code: '22012' });
        await expect(r`select 1`).rejects.toMatchObject({ code: '25P02' });
        await r`rollback`;
        expect([...(await r`select ${1}::int + 1 as n`)]).toEqual([{ n: 2 }]);
      } finally {
        r.release();
      }
      expect(await storedIds(tag)).toEqual([]);
      // sql.begin with an error inside: rejected with the error, rolled back, connection fine.
      await expect(
        sql.begin(async (tx) => {
          await tx`insert into ${tx(table)} (id, tag) values (2, ${tag})`;
          await tx`select 1/0`;
        }),
      ).rejects.toMatchObject({ code: '22012' });
      expect(await storedIds(tag)).toEqual([]);
      expect([...(await sql`select 1 as one`)]).toEqual([{ one: 1 }]);
    });

    it('keeps SET TimeZone on other server connections and does not leak it to another client', async () => {
      const a = pgjs();
      const b = pgjs();
      const holders = await Promise.all(Array.from({ length: POOL_SIZE - 1 }, () => pgClient()));
      await a.unsafe("SET TimeZone = 'Asia/Tokyo'");
      const pids = new Set<number>();
      const seenByA: string[] = [];
      const seenByB: string[] = [];
      for (let i = 0; i < 40; i++) {
        await whileHeld(holders, i % POOL_SIZE, async () => {
          const [ra] = await a`select current_setting('TimeZone') as tz, pg_backend_pid() as pid`;
          seenByA.push(ra.tz as string);
          pids.add(ra.pid as number);
          const [rb] = await b`select current_setting('TimeZone') as tz`;
          seenByB.push(rb.tz as string);
        });
      }
      expect(pids.size).toBeGreaterThanOrEqual(3);
      expect(new Set(seenByA)).toEqual(new Set(['Asia/Tokyo']));
      expect(new Set(seenByB)).toEqual(new Set([defaultTz]));
    });
  });
});
