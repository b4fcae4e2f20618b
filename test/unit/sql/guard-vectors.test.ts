/**
 * The guard's rules are not guesses: each attack below really changes the tenant context when
 * sent straight to Postgres (the test server, as the non-superuser app role), and the guard
 * refuses the statement that does it. Each case runs in a transaction that is rolled back.
 */
import pg from 'pg';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { StatementGuard } from '../../../src/sql/guard.js';
import { APP_ROLE, backend, uniqueName } from '../../harness/postgres.js';

interface Vector {
  /** Statements sent in order; the guard must refuse at least one of them. */
  attack: string[];
  /** Query whose single value shows the context after the attack. */
  probe?: string;
  expected?: string;
}

const TENANT = "select current_setting('app.tenant_id')";
const obj = uniqueName('gv');

const VECTORS: Record<string, Vector> = {
  'mixed case': { attack: ["set App.Tenant_Id = 'b'"] },
  'quoted parts, upper case': { attack: ["SET \"APP\".\"TENANT_ID\" = 'b'"] },
  'spaces and comments between name parts': { attack: ["SET/**/app /* x */ . -- y\n tenant_id = 'b'"] },
  'Unicode-escaped name': { attack: ["SET U&\"\\0061pp\".tenant_id = 'b'"] },
  'second statement of a Query': { attack: ["select 1; set app.tenant_id = 'b'"] },
  'RESET (reads as empty)': { attack: ['reset app.tenant_id'], expected: '' },
  'RESET ALL': { attack: ['RESET ALL'], expected: '' },
  'Unicode-escaped set_config': { attack: ["select U&\"\\0073et_config\"('app.tenant_id', 'b', false)"] },
  'E-string escaped setting name': { attack: ["select set_config(E'\\x61pp.tenant_id', 'b', false)"] },
  'string continuation': { attack: ["select set_config('app.'\n'tenant_id', 'b', false)"] },
  'upper-case setting name': { attack: ["select set_config('APP.TENANT_ID', 'b', false)"] },
  'char(n) cast strips blanks': { attack: ["select set_config('app.tenant_id    '::char(20), 'b', false)"] },
  'computed name': { attack: ["select set_config('app.' || 'tenant_id', 'b', false)"] },
  'in a CTE': { attack: ["with x as (select set_config('app.tenant_id', 'b', false)) select * from x"] },
  'in FROM': { attack: ["select * from rows from (set_config('app.tenant_id', 'b', false))"] },
  'through PREPARE': { attack: [`prepare ${obj}(text) as select set_config($1, 'b', false)`, `execute ${obj}('app.tenant_id')`] },
  'under EXPLAIN ANALYZE': { attack: ["explain analyze select set_config('app.tenant_id', 'b', false)"] },
  'DO block': { attack: ["do $$ begin perform set_config('app.tenant_id', 'b', false); end $$"] },
  'DO block, exception handler': { attack: ["do $$ begin raise exception 'x'; exception when others then set app.tenant_id = 'b'; end $$"] },
  'DO block, concatenated dynamic SQL': { attack: ["do $$ begin execute 'se' || 't app.tenant_id = ''b'''; end $$"] },
  'DO block, escaped dynamic SQL': { attack: ["do $$ begin execute E'\\x73et app.tenant_id = ''b'''; end $$"] },
  'aggregate with set_config as its state function': {
    attack: [
      `create aggregate ${obj}(text, bool) (sfunc = set_config, stype = text, initcond = 'app.tenant_id')`,
      `select ${obj}('b', false)`,
    ],
  },
  'SQL function': {
    attack: [`create function ${obj}() returns text language sql as $$ select set_config('app.tenant_id', 'b', false) $$`, `select ${obj}()`],
  },
  'function SET clause (applies while the function runs)': {
    attack: [`create function ${obj}() returns text language sql set search_path = b as $$ select current_setting('search_path') $$`],
    probe: `select ${obj}()`,
  },
  'UPDATE pg_settings (search_path)': {
    attack: ["update pg_settings set setting = 'b' where name = 'search_path'"],
    probe: 'show search_path',
  },
  'updatable view over pg_settings (search_path)': {
    attack: [`create view ${obj} as select * from pg_settings`, `update ${obj} set setting = 'b' where name = 'search_path'`],
    probe: 'show search_path',
  },
  'standard_conforming_strings off hides set_config inside what the parser reads as a string': {
    attack: ['set standard_conforming_strings = off', "select '\\'', set_config('app.tenant_id', 'b', false) --'"],
  },
};

let client: pg.Client;
let guard: StatementGuard;

beforeAll(async () => {
  guard = await StatementGuard.create({ tenantSetting: 'app.tenant_id', protectSearchPath: true });
  client = new pg.Client({ ...backend(), user: APP_ROLE.user, password: APP_ROLE.password, database: APP_ROLE.database });
  await client.connect();
});

afterAll(async () => {
  await client?.end();
});

describe('attacks that work on Postgres are refused by the guard', () => {
  it.each(Object.entries(VECTORS))('%s', async (_name, v) => {
    const refused = v.attack.filter((sql) => guard.check(sql) !== null);
    expect(refused.length, 'the guard refuses at least one step').toBeGreaterThan(0);

    await client.query('begin');
    try {
      await client.query("select set_config('app.tenant_id', 'a', true), set_config('x.y', 'a', true), set_config('search_path', 'public', true)");
      for (const sql of v.attack) await client.query(sql);
      const r = await client.query({ text: v.probe ?? TENANT, rowMode: 'array' });
      expect(r.rows[0][0], 'the attack works when unguarded').toBe(v.expected ?? 'b');
    } finally {
      await client.query('rollback');
      await client.query('deallocate all');
      await client.query('set standard_conforming_strings = on');
    }
  });

  it('the last step of the standard_conforming_strings attack alone passes the guard, hence the pin', () => {
    expect(guard.check("select '\\'', set_config('app.tenant_id', 'b', false) --'")).toBeNull();
  });
});
