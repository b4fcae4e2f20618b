/**
 * How a client's tenant is found at login: user suffix, startup options, database name, JWT
 * password, TLS server name; conflicts, unknown tenants, per-tenant client limits, and reload.
 */
import { execFileSync } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import pg from 'pg';
import { SignJWT } from 'jose';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { mintToken } from '../../src/auth/jwt.js';
import { configSchema, type Config } from '../../src/config/schema.js';
import type { Proxy } from '../../src/proxy/proxy.js';
import { startProxyWith } from '../harness/proxy.js';
import { APP_ROLE, adminClient, backend } from '../harness/postgres.js';
import { createTenantLayout, tenantConfigInput, type TenantLayout } from '../harness/tenants.js';

const SECRET = 'test-secret-0123456789-abcdefgh';
const AUDIENCE = 'pgtenant-test';

let layout: TenantLayout;
let proxy: Proxy;
let tmp: string;

function config(overrides: Record<string, unknown> = {}): Config {
  const input = tenantConfigInput(layout);
  const pgInfo = backend();
  const tenancy = input.tenancy as Record<string, unknown>;
  const tenants = tenancy.tenants as Record<string, unknown>;
  return configSchema.parse({
    ...input,
    listen: { host: '127.0.0.1', port: 0, tls: { cert: path.join(tmp, 'cert.pem'), key: path.join(tmp, 'key.pem') } },
    // Every pool logs in to Postgres as the app role; the JWT user has no role of its own.
    backends: { main: { host: pgInfo.host, port: pgInfo.port, user: APP_ROLE.user, password: APP_ROLE.password } },
    users: { ...(input.users as object), api: { auth: 'jwt' } },
    jwt: { secret: SECRET, audience: AUDIENCE },
    tenancy: {
      ...tenancy,
      databases: { r2db: 'r2' },
      sniSuffix: 'db.test',
      tenants: { ...tenants, r3: { placement: 'row', limits: { maxClients: 1 } }, s3: { placement: 'schema', limits: { statementTimeout: '300ms', poolShare: 0.25 } } },
    },
    pool: { mode: 'transaction', size: 4, queueTimeout: '2s' },
    ...overrides,
  });
}

async function tenantSeen(options: pg.ClientConfig): Promise<string> {
  const c = new pg.Client({ host: '127.0.0.1', port: proxy.port, password: APP_ROLE.password, database: APP_ROLE.database, ...options });
  await c.connect();
  try {
    const r = await c.query<{ s: string; t: string[] }>("select current_setting('app.tenant_id') as s, array(select distinct tenant_id from items) as t");
    expect(r.rows[0].t).toEqual([r.rows[0].s]);
    return r.rows[0].s;
  } finally {
    await c.end();
  }
}

async function loginError(options: pg.ClientConfig): Promise<{ code?: string; message: string }> {
  const c = new pg.Client({ host: '127.0.0.1', port: proxy.port, password: APP_ROLE.password, database: APP_ROLE.database, ...options });
  c.on('error', () => undefined);
  try {
    await c.connect();
  } catch (e) {
    return e as { code?: string; message: string };
  } finally {
    await c.end().catch(() => undefined);
  }
  throw new Error('login succeeded');
}

beforeAll(async () => {
  tmp = mkdtempSync(path.join(tmpdir(), 'pgtenant-login-'));
  execFileSync('openssl', ['req', '-x509', '-newkey', 'rsa:2048', '-nodes', '-keyout', path.join(tmp, 'key.pem'), '-out', path.join(tmp, 'cert.pem'), '-days', '1', '-subj', '/CN=db.test'], { stdio: 'ignore' });
  layout = await createTenantLayout();
  const admin = await adminClient(layout.shared);
  try {
    // A PostgREST-style policy that reads the JWT claims pgtenant binds.
    await admin.query(`create table notes (sub text not null, body text not null);
      insert into notes values ('alice', 'alice note'), ('bob', 'bob note');
      alter table notes enable row level security; alter table notes force row level security;
      create policy by_sub on notes using (sub = (select nullif(current_setting('request.jwt.claims', true), '')::json->>'sub'));
      grant select on notes to ${APP_ROLE.user};`);
  } finally {
    await admin.end();
  }
  proxy = await startProxyWith(config());
});

afterAll(async () => {
  await proxy?.close();
  await layout?.drop();
  if (tmp) rmSync(tmp, { recursive: true, force: true });
});

describe('tenant sources', () => {
  it('user@tenant and user.tenant', async () => {
    expect(await tenantSeen({ user: 'app@r1' })).toBe('r1');
    expect(await tenantSeen({ user: 'app.r2' })).toBe('r2');
  });

  it('startup options -c pgtenant.tenant=T', async () => {
    expect(await tenantSeen({ user: 'app', options: '-c pgtenant.tenant=r1' })).toBe('r1');
  });

  it('a database name mapped to a tenant', async () => {
    expect(await tenantSeen({ user: 'app', database: 'r2db' })).toBe('r2');
  });

  it('the TLS server name', async () => {
    expect(await tenantSeen({ user: 'app', ssl: { rejectUnauthorized: false, servername: 'r1.db.test' } })).toBe('r1');
  });

  it('a JWT password: tenant from its claim, claims visible to policies as request.jwt.claims', async () => {
    const token = await mintToken(configSchema.shape.jwt.unwrap().parse({ secret: SECRET, audience: AUDIENCE }), { tenant: 'r1', ttlSeconds: 60, subject: 'alice' });
    const c = new pg.Client({ host: '127.0.0.1', port: proxy.port, user: 'api', password: token, database: APP_ROLE.database });
    await c.connect();
    try {
      const r = await c.query<{ s: string; body: string }>("select current_setting('app.tenant_id') as s, body from notes");
      expect(r.rows).toEqual([{ s: 'r1', body: 'alice note' }]);
      const claims = await c.query<{ c: { sub: string; tenant_id: string; aud: string } }>("select current_setting('request.jwt.claims')::json as c");
      expect(claims.rows[0].c).toMatchObject({ sub: 'alice', tenant_id: 'r1', aud: AUDIENCE });
    } finally {
      await c.end();
    }
  });

  it('sources that disagree are refused with 28000, naming both', async () => {
    const e = await loginError({ user: 'app@r1', options: '-c pgtenant.tenant=r2' });
    expect(e.code).toBe('28000');
    expect(e.message).toMatch(/user name says "r1".*option says "r2"/);
  });

  it('an unknown tenant, or none at all, is refused with 28000', async () => {
    expect(await loginError({ user: 'app@nobody' })).toMatchObject({ code: '28000', message: 'unknown tenant "nobody"' });
    expect(await loginError({ user: 'app' })).toMatchObject({ code: '28000', message: 'no tenant given' });
  });

  it('a startup setting of the tenant setting is refused with 42501', async () => {
    expect(await loginError({ user: 'app@r1', options: '-c app.tenant_id=r2' })).toMatchObject({ code: '42501' });
  });

  it('settings the guard relies on cannot be changed at startup (0A000)', async () => {
    expect(await loginError({ user: 'app@r1', options: '-c standard_conforming_strings=off' })).toMatchObject({ code: '0A000' });
    expect(await loginError({ user: 'app@r1', options: '-c client_encoding=SJIS' })).toMatchObject({ code: '0A000' });
    expect(await tenantSeen({ user: 'app@r1', options: '-c client_encoding=UTF8' })).toBe('r1');
  });

  it('limits.maxClients: one client more gets 53300; others are not affected', async () => {
    const first = new pg.Client({ host: '127.0.0.1', port: proxy.port, user: 'app@r3', password: APP_ROLE.password, database: APP_ROLE.database });
    await first.connect();
    try {
      expect(await loginError({ user: 'app@r3' })).toMatchObject({ code: '53300' });
      expect(await tenantSeen({ user: 'app@r1' })).toBe('r1');
    } finally {
      await first.end();
    }
    expect(await tenantSeen({ user: 'app@r3' })).toBe('r3');
  });
});

describe('tenant limits', () => {
  const client = async (user: string): Promise<pg.Client> => {
    const c = new pg.Client({ host: '127.0.0.1', port: proxy.port, user, password: APP_ROLE.password, database: APP_ROLE.database });
    await c.connect();
    return c;
  };

  it('statementTimeout applies to that tenant only', async () => {
    const limited = await client('app@s3');
    const free = await client('app@s1');
    try {
      await expect(limited.query('select pg_sleep(1)')).rejects.toMatchObject({ code: '57014', message: 'canceling statement due to statement timeout' });
      await free.query('select pg_sleep(0.5)');
      expect((await limited.query<{ t: string }>('show statement_timeout')).rows).toEqual([{ statement_timeout: '300ms' }]);
      expect((await free.query<{ t: string }>('show statement_timeout')).rows).toEqual([{ statement_timeout: '0' }]);
    } finally {
      await limited.end();
      await free.end();
    }
  });

  it('poolShare: a tenant holds at most its share of the pool while others still get connections', async () => {
    // Pool size 4, share 0.25: one connection for s3 at a time.
    const holders = [await client('app@s3'), await client('app@s3')];
    const other = await client('app@s1');
    try {
      await holders[0].query('begin');
      await holders[0].query('select 1');
      let second = false;
      const waiting = holders[1].query('select 2 as n').then(() => (second = true));
      await new Promise((r) => setTimeout(r, 200));
      expect(second).toBe(false);
      expect((await other.query<{ n: number }>('select 3 as n')).rows).toEqual([{ n: 3 }]);
      await holders[0].query('commit');
      await waiting;
      expect(second).toBe(true);
    } finally {
      for (const c of [...holders, other]) await c.end();
    }
  });
});

describe('JWT passwords that are refused with 28P01', () => {
  const reject = async (password: string, message: RegExp): Promise<void> => {
    const e = await loginError({ user: 'api', password });
    expect(e.code).toBe('28P01');
    expect(e.message).toMatch(message);
  };
  const key = new TextEncoder().encode(SECRET);

  it('expired', async () => {
    const token = await new SignJWT({ tenant_id: 'r1' }).setProtectedHeader({ alg: 'HS256' }).setAudience(AUDIENCE).setExpirationTime(Math.floor(Date.now() / 1000) - 60).sign(key);
    await reject(token, /JWT expired at/);
  });

  it('wrong audience', async () => {
    const token = await new SignJWT({ tenant_id: 'r1' }).setProtectedHeader({ alg: 'HS256' }).setAudience('someone-else').setExpirationTime('1m').sign(key);
    await reject(token, /audience "someone-else" does not match/);
  });

  it('wrong key', async () => {
    const token = await new SignJWT({ tenant_id: 'r1' }).setProtectedHeader({ alg: 'HS256' }).setAudience(AUDIENCE).setExpirationTime('1m').sign(new TextEncoder().encode('another-secret-0123456789-xyz'));
    await reject(token, /signature verification failed/);
  });

  it('alg: none', async () => {
    const b64 = (o: object): string => Buffer.from(JSON.stringify(o)).toString('base64url');
    await reject(`${b64({ alg: 'none', typ: 'JWT' })}.${b64({ tenant_id: 'r1', aud: AUDIENCE })}.`, /"none" is not allowed/);
  });

  it('malformed', async () => {
    await reject('not-a-jwt', /malformed JWT/);
  });
});

describe('reload', () => {
  it('moves a connected tenant to its new placement for its next transaction', async () => {
    const c = new pg.Client({ host: '127.0.0.1', port: proxy.port, user: 'app@r1', password: APP_ROLE.password, database: APP_ROLE.database });
    await c.connect();
    try {
      expect((await c.query<{ t: string }>('select distinct tenant_id as t from items')).rows).toEqual([{ t: 'r1' }]);
      const next = config();
      next.tenancy!.tenants.r1 = { placement: 'database', database: `${layout.prefix}_d1`, limits: {} };
      await proxy.reload(next);
      expect((await c.query<{ t: string }>('select distinct tenant_id as t from items')).rows).toEqual([{ t: 'd1' }]);
    } finally {
      await c.end();
    }
  });
});
