import { createHash } from 'node:crypto';
import { existsSync } from 'node:fs';
import path from 'node:path';
import { Readable, Writable } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import pg from 'pg';
import postgres from 'postgres';
import type { Proxy } from '../../src/proxy/proxy.js';
import { runPsql, type RunResult } from '../harness/binaries.js';
import { APP_ROLE, backend, uniqueName } from '../harness/postgres.js';
import { startProxy, viaProxy } from '../harness/proxy.js';

/**
 * COPY FROM STDIN / TO STDOUT of 100k rows through the proxy in transaction mode, with psql and
 * postgres.js (node-postgres needs pg-copy-streams for COPY, which is not installed: see the check
 * below), and COPY that fails midway.
 */

const ROWS = 100_000;
/** Sum of ids 1..ROWS. */
const ID_SUM = (ROWS * (ROWS + 1)) / 2;

/** Row i of the test data in COPY text format; tabs, backslashes and non-ASCII exercise escaping. */
function row(i: number): string {
  return `${i}\tvalue ${i} ü\\\\x ${'z'.repeat(i % 17)}\n`;
}

/** Rows from..to (inclusive) as one string. */
function rows(from: number, to: number): string {
  let s = '';
  for (let i = from; i <= to; i++) s += row(i);
  return s;
}

const ALL_ROWS = rows(1, ROWS);
const ALL_SHA = sha256(ALL_ROWS);

function sha256(data: string | Buffer): string {
  return createHash('sha256').update(data).digest('hex');
}

let proxy: Proxy;
let direct: pg.Client;
const sqls: postgres.Sql[] = [];
const tables: string[] = [];

function pgjs(): postgres.Sql {
  const o = viaProxy(proxy);
  const sql = postgres({ host: o.host, port: o.port, user: o.user, password: o.password, database: o.database, max: 1, onnotice: () => undefined });
  sqls.push(sql);
  return sql;
}

function psql(args: string[], input?: string): Promise<RunResult> {
  return runPsql(['-X', '-q', '-h', '127.0.0.1', '-p', String(proxy.port), '-U', APP_ROLE.user, '-d', APP_ROLE.database, ...args], {
    env: { PGPASSWORD: APP_ROLE.password, PGSSLMODE: 'disable', PGCONNECT_TIMEOUT: '5' },
    input,
  });
}

async function newTable(prefix: string): Promise<string> {
  const t = uniqueName(prefix);
  await direct.query(`create table ${t} (id int primary key, v text not null)`);
  tables.push(t);
  return t;
}

/** Count, sum of ids and a checksum of the table's rows as Postgres itself sees them (not through the proxy). */
async function stored(table: string): Promise<{ count: number; sum: number; md5: string | null }> {
  const r = await direct.query<{ count: number; sum: string | null; md5: string | null }>(
    `select count(*)::int as count, sum(id) as sum, md5(string_agg(id || E'\\t' || replace(v, E'\\\\', E'\\\\\\\\') || E'\\n', '' order by id)) as md5 from ${table}`,
  );
  return { count: r.rows[0].count, sum: Number(r.rows[0].sum ?? 0), md5: r.rows[0].md5 };
}

const EXPECTED_MD5 = createHash('md5').update(ALL_ROWS).digest('hex');

describe('COPY through the proxy (transaction mode)', () => {
  beforeAll(async () => {
    proxy = await startProxy();
    const be = backend();
    direct = new pg.Client({ host: be.host, port: be.port, user: APP_ROLE.user, password: APP_ROLE.password, database: APP_ROLE.database });
    await direct.connect();
  });

  afterAll(async () => {
    await Promise.allSettled(sqls.map((s) => s.end({ timeout: 1 })));
    if (direct) {
      for (const t of tables) await direct.query(`drop table if exists ${t}`).catch(() => undefined);
      await direct.end();
    }
    await proxy?.close();
  });

  it('pg-copy-streams is not installed, so node-postgres COPY is covered by psql and postgres.js', () => {
    // If this starts failing, pg-copy-streams was added: add node-postgres COPY tests with it.
    expect(existsSync(path.resolve('node_modules/pg-copy-streams'))).toBe(false);
  });

  describe('psql', () => {
    it('COPY FROM STDIN of 100k rows, then COPY TO STDOUT of them', async () => {
      const table = await newTable('copy_psql');
      const load = await psql(['-v', 'ON_ERROR_STOP=1', '-c', `COPY ${table} (id, v) FROM STDIN`], ALL_ROWS);
      expect(load.stderr).toBe('');
      expect(load.code).toBe(0);
      expect(await stored(table)).toEqual({ count: ROWS, sum: ID_SUM, md5: EXPECTED_MD5 });

      const dump = await psql(['-v', 'ON_ERROR_STOP=1', '-c', `COPY (select id, v from ${table} order by id) TO STDOUT`]);
      expect(dump.stderr).toBe('');
      expect(dump.code).toBe(0);
      const lines = dump.stdout.split('\n').filter((l) => l !== '');
      expect(lines).toHaveLength(ROWS);
      expect(lines.reduce((s, l) => s + Number(l.slice(0, l.indexOf('\t'))), 0)).toBe(ID_SUM);
      expect(sha256(dump.stdout)).toBe(ALL_SHA);
    });

    it('\\copy from a script (data inline) and more statements in the same session', async () => {
      const table = await newTable('copy_psql_inline');
      const script = `\\copy ${table} (id, v) from stdin\n${ALL_ROWS}\\.\nselect count(*), sum(id) from ${table};\n`;
      const r = await psql(['-At', '-v', 'ON_ERROR_STOP=1'], script);
      expect(r.stderr).toBe('');
      expect(r.code).toBe(0);
      expect(r.stdout.trim()).toBe(`${ROWS}|${ID_SUM}`);
    });

    it('a bad row midway fails the COPY, loads nothing, and the session goes on', async () => {
      const table = await newTable('copy_psql_bad');
      const bad = rows(1, 49_999) + 'not-a-number\tbad row\n' + rows(50_001, ROWS);
      const script = [
        '\\set VERBOSITY verbose',
        `COPY ${table} (id, v) FROM STDIN;`,
        bad + '\\.',
        `select 'after', count(*) from ${table};`,
        `insert into ${table} (id, v) values (1, 'one');`,
        `select count(*) from ${table};`,
      ].join('\n');
      const r = await psql(['-At'], script);
      expect(r.stderr).toMatch(/ERROR:\s+22P02: invalid input syntax for type integer: "not-a-number"/);
      expect(r.stderr).toMatch(/CONTEXT:\s+COPY \S+, line 50000/);
      expect(r.stdout.trim().split('\n')).toEqual(['after|0', '1']);
      expect(await stored(table)).toMatchObject({ count: 1, sum: 1 });
    });
  });

  describe('postgres.js', () => {
    it('COPY FROM STDIN of 100k rows via .writable(), in small and in large (>256 kB) CopyData messages', async () => {
      const sql = pgjs();
      for (const rowsPerChunk of [500, 25_000]) {
        const table = await newTable('copy_pgjs');
        const writable = await sql`copy ${sql(table)} (id, v) from stdin`.writable();
        async function* chunks(): AsyncGenerator<string> {
          for (let i = 1; i <= ROWS; i += rowsPerChunk) yield rows(i, Math.min(ROWS, i + rowsPerChunk - 1));
        }
        await pipeline(Readable.from(chunks()), writable);
        expect(await stored(table)).toEqual({ count: ROWS, sum: ID_SUM, md5: EXPECTED_MD5 });
        // The same client goes on.
        const [{ count }] = await sql`select count(*)::int as count from ${sql(table)}`;
        expect(count).toBe(ROWS);
      }
    });

    it('COPY TO STDOUT of 100k rows via .readable()', async () => {
      const table = await newTable('copy_pgjs_out');
      const load = await psql(['-v', 'ON_ERROR_STOP=1', '-c', `COPY ${table} (id, v) FROM STDIN`], ALL_ROWS);
      expect(load.code).toBe(0);

      const sql = pgjs();
      const readable = await sql`copy (select id, v from ${sql(table)} order by id) to stdout`.readable();
      const hash = createHash('sha256');
      let count = 0;
      let sum = 0;
      let partial = '';
      await pipeline(
        readable,
        new Writable({
          write(chunk: Buffer, _enc, cb) {
            hash.update(chunk);
            const text = partial + chunk.toString('utf8');
            const lines = text.split('\n');
            partial = lines.pop()!;
            for (const l of lines) {
              count++;
              sum += Number(l.slice(0, l.indexOf('\t')));
            }
            cb();
          },
        }),
      );
      expect(partial).toBe('');
      expect(count).toBe(ROWS);
      expect(sum).toBe(ID_SUM);
      expect(hash.digest('hex')).toBe(ALL_SHA);
      const [{ n }] = await sql`select ${1}::int + 1 as n`;
      expect(n).toBe(2);
    });

    // postgres.js resolves .writable() at CopyInResponse and waits for CommandComplete in final(): a
    // server-side COPY error leaves its stream waiting, even against Postgres directly. A bad row is
    // covered through psql above; here the client-side abort (CopyFail) path.
    it('a COPY the client aborts midway (CopyFail) loads nothing, and the connection stays usable', async () => {
      const table = await newTable('copy_pgjs_abort');
      const sql = pgjs();
      const writable = await sql`copy ${sql(table)} (id, v) from stdin`.writable();
      const failed = new Promise<Error>((resolve) => writable.on('error', resolve));
      writable.write(rows(1, 50_000));
      writable.destroy(new Error('client gave up'));
      expect((await failed).message).toBe('client gave up');
      expect(await stored(table)).toMatchObject({ count: 0 });
      const [{ n }] = await sql`select ${41}::int + 1 as n`;
      expect(n).toBe(42);
      await sql`insert into ${sql(table)} (id, v) values (1, 'one')`;
      expect(await stored(table)).toMatchObject({ count: 1, sum: 1 });
    });
  });

  describe('node-postgres', () => {
    it('COPY FROM STDIN without a stream is refused with CopyFail and the client stays usable', async () => {
      // Without pg-copy-streams node-postgres answers CopyInResponse with CopyFail: that path through the proxy.
      const table = await newTable('copy_pg_fail');
      const c = new pg.Client(viaProxy(proxy));
      await c.connect();
      try {
        await expect(c.query(`copy ${table} (id, v) from stdin`)).rejects.toMatchObject({ code: '57014' });
        expect((await c.query('select $1::int + 1 as n', [1])).rows).toEqual([{ n: 2 }]);
        expect(await stored(table)).toMatchObject({ count: 0 });
      } finally {
        await c.end();
      }
    });
  });
});
