/**
 * Seeing and steering: /metrics, /health, /ready and /tenants on the admin HTTP port while real
 * clients run, and the admin console (database `pgtenant`) with SHOW, PAUSE/RESUME and KILL.
 */
import { readFileSync } from 'node:fs';
import pg from 'pg';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { configSchema } from '../../src/config/schema.js';
import type { Proxy } from '../../src/proxy/proxy.js';
import { startProxyWith } from '../harness/proxy.js';
import { runPsql } from '../harness/binaries.js';
import { APP_ROLE, backend } from '../harness/postgres.js';
import { createTenantLayout, tenantConfigInput, type TenantLayout } from '../harness/tenants.js';

let layout: TenantLayout;
let proxy: Proxy;

const as = (tenant: string) => ({ host: '127.0.0.1', port: proxy.port, user: `${APP_ROLE.user}@${tenant}`, password: APP_ROLE.password, database: APP_ROLE.database });
const adminUser = () => backend().user;

async function connected(config: pg.ClientConfig): Promise<pg.Client> {
  const c = new pg.Client(config);
  c.on('error', () => undefined);
  await c.connect();
  return c;
}

const adminClient = () => connected({ host: '127.0.0.1', port: proxy.port, user: adminUser(), password: backend().password, database: 'pgtenant' });

async function get(path: string): Promise<{ status: number; body: string }> {
  const res = await fetch(`http://127.0.0.1:${proxy.adminPort}${path}`);
  return { status: res.status, body: await res.text() };
}

/** The value of one series in Prometheus text (labels in the order pgtenant writes them). */
function series(text: string, name: string, labels: string): number | undefined {
  const line = text.split('\n').find((l) => l.startsWith(`${name}{${labels}} `));
  return line === undefined ? undefined : Number(line.slice(line.lastIndexOf(' ') + 1));
}

beforeAll(async () => {
  layout = await createTenantLayout();
  const input = tenantConfigInput(layout, { admin: { port: 0, users: [backend().user] } });
  proxy = await startProxyWith(configSchema.parse(input));
});

afterAll(async () => {
  await proxy?.close();
  await layout?.drop();
});

describe('admin HTTP', () => {
  it('/health and /ready answer', async () => {
    expect(await get('/health')).toEqual({ status: 200, body: 'ok\n' });
    expect((await get('/ready')).status).toBe(200);
    expect((await get('/nope')).status).toBe(404);
  });

  it('/metrics counts what tenants ran, per tenant', async () => {
    const r1 = await connected(as('r1'));
    for (let i = 0; i < 5; i++) await r1.query('select 1');
    await r1.query('begin');
    await r1.query('select count(*) from items');
    await r1.query('commit');
    const r2 = await connected(as('r2'));
    await expect(r2.query('select 1/0')).rejects.toMatchObject({ code: '22012' });
    await expect(r2.query("set app.tenant_id = 'r1'")).rejects.toMatchObject({ code: '42501' });

    const { status, body } = await get('/metrics');
    expect(status).toBe(200);
    expect(series(body, 'pgtenant_tenant_transactions_total', 'tenant="r1"')).toBe(6);
    expect(series(body, 'pgtenant_tenant_queries_total', 'tenant="r1"')).toBe(8);
    expect(series(body, 'pgtenant_tenant_rows_total', 'tenant="r1"')).toBe(6);
    expect(series(body, 'pgtenant_tenant_clients', 'tenant="r1"')).toBe(1);
    expect(series(body, 'pgtenant_tenant_errors_total', 'tenant="r2",class="22"')).toBe(1);
    expect(series(body, 'pgtenant_tenant_blocked_total', 'tenant="r2"')).toBe(1);
    expect(series(body, 'pgtenant_blocked_statements_total', '')).toBeUndefined();
    expect(body).toMatch(/^pgtenant_blocked_statements_total 1$/m);
    expect(series(body, 'pgtenant_tenant_transaction_seconds_count', 'tenant="r1"')).toBe(6);
    expect(body).toMatch(new RegExp(`^pgtenant_pool_server_connections\\{pool="main/${layout.shared}/app",state="idle"\\} \\d+$`, 'm'));
    expect(series(body, 'pgtenant_pool_clients', `pool="main/${layout.shared}/app",state="idle"`)).toBeGreaterThanOrEqual(2);
    expect(body).toMatch(/^pgtenant_pool_queue_wait_seconds_count\{pool="[^"]+"\} \d+$/m);
    expect(body).toMatch(/^pgtenant_backend_transaction_seconds_bucket\{backend="main",le="\+Inf"\} \d+$/m);
    expect(body).toMatch(/^pgtenant_process_cpu_user_seconds_total /m);

    const report = JSON.parse((await get('/tenants')).body) as { tenants: { tenant: string; transactions: number; placement: string; clients: number }[] };
    expect(report.tenants.find((t) => t.tenant === 'r1')).toMatchObject({ transactions: 6, placement: 'row', clients: 1 });
    expect((await get('/tenants?since=1h')).status).toBe(200);
    expect((await get('/tenants?since=soon')).status).toBe(400);
    await r1.end();
    await r2.end();
  });

  it('the Grafana dashboard in config/ queries exactly the series /metrics exports', async () => {
    const dashboard = readFileSync(new URL('../../config/grafana-dashboard.json', import.meta.url), 'utf8');
    const used = new Set([...dashboard.matchAll(/pgtenant_[a-z0-9_]+/g)].map((m) => m[0].replace(/_(bucket|sum|count)$/, '')));
    const { body } = await get('/metrics');
    const exported = new Set([...body.matchAll(/^# TYPE (pgtenant_[a-z0-9_]+) /gm)].map((m) => m[1]));
    expect([...used].filter((name) => !exported.has(name))).toEqual([]);
    const own = [...exported].filter((name) => !/^pgtenant_(process|nodejs)_/.test(name));
    expect(own.filter((name) => !used.has(name))).toEqual([]);
  });
});

describe('admin console', () => {
  it('SHOW commands answer through psql', async () => {
    const c = await connected(as('s1'));
    await c.query('select 1');
    const psql = (command: string) =>
      runPsql(['-h', '127.0.0.1', '-p', String(proxy.port), '-U', adminUser(), '-d', 'pgtenant', '-At', '-F', '|', '-c', command], { env: { PGPASSWORD: backend().password } });
    const tenants = await psql('SHOW TENANTS');
    expect(tenants.stderr).toBe('');
    expect(tenants.stdout).toMatch(/^s1\|schema\|1\|1\|/m);
    expect((await psql('SHOW POOLS')).stdout).toContain(`main/${layout.shared}/app|main|4|`);
    expect((await psql('SHOW CLIENTS')).stdout).toMatch(/\|app\|s1\|/);
    expect((await psql('SHOW SERVERS')).stdout).toMatch(new RegExp(`^main/${layout.shared}/app\\|\\d+\\|(idle|active)\\|`, 'm'));
    expect((await psql('SHOW STATS')).stdout.trim()).toMatch(/^\d+\|\d+\|/);
    const config = (await psql('SHOW CONFIG')).stdout;
    expect(config).toMatch(/^users\.app\.password\|\*\*\*$/m);
    expect(config).not.toContain(APP_ROLE.password);
    const bad = await psql('SHOW NOTHING');
    expect(bad.stderr).toMatch(/SHOW NOTHING: use SHOW POOLS/);
    await c.end();
  });

  it('only admin.users may open it', async () => {
    const c = new pg.Client({ host: '127.0.0.1', port: proxy.port, user: 'app@r1', password: APP_ROLE.password, database: 'pgtenant' });
    await expect(c.connect()).rejects.toMatchObject({ code: '28000' });
  });

  it('PAUSE acme waits for its running transaction, holds its new ones, RESUME releases them; others keep running', async () => {
    const admin = await adminClient();
    const paused = await connected(as('r1'));
    const other = await connected(as('r2'));
    try {
      await paused.query('begin');
      await paused.query('select 1');
      let pauseDone = false;
      const pause = admin.query('PAUSE r1').then(() => (pauseDone = true));
      await new Promise((r) => setTimeout(r, 150));
      expect(pauseDone).toBe(false);
      await paused.query('commit');
      await pause;

      let answered = false;
      const held = paused.query<{ n: number }>('select 42 as n').then((r) => {
        answered = true;
        return r;
      });
      await new Promise((r) => setTimeout(r, 300));
      expect(answered).toBe(false);
      expect((await other.query<{ n: number }>('select 7 as n')).rows).toEqual([{ n: 7 }]);
      const shown = await admin.query<{ tenant: string; paused: string }>('SHOW TENANTS');
      expect(shown.rows.find((r) => r.tenant === 'r1')?.paused).toBe('true');

      await admin.query('RESUME r1');
      expect((await held).rows).toEqual([{ n: 42 }]);
    } finally {
      await admin.end();
      await paused.end();
      await other.end();
    }
  });

  it('RESUME of a tenant a reload removed closes its waiting client with the reason, and nobody else', async () => {
    // A proxy of its own: the reload removes r1.
    const input = tenantConfigInput(layout, { admin: { port: 0, users: [backend().user] } });
    const own = await startProxyWith(configSchema.parse(input));
    const at = (tenant: string): pg.ClientConfig => ({ ...as(tenant), port: own.port });
    const admin = await connected({ host: '127.0.0.1', port: own.port, user: adminUser(), password: backend().password, database: 'pgtenant' });
    const waiting = await connected(at('r1'));
    const other = await connected(at('r2'));
    try {
      await admin.query('PAUSE r1');
      const held = waiting.query('select 1').then(
        () => 'answered',
        (e: Error & { code?: string }) => e,
      );
      // Held behind the PAUSE before the reload.
      await new Promise((r) => setTimeout(r, 300));
      const tenancy = layout.tenancy as { tenants: Record<string, unknown> };
      const { r1: _removed, ...tenants } = tenancy.tenants;
      await own.reload(configSchema.parse({ ...input, tenancy: { ...tenancy, tenants } }));
      // The waiting client's transaction is placed anew when it is released, and r1 is gone: that
      // fails the client, not the admin session that released it.
      expect((await admin.query('RESUME r1')).command).toBe('RESUME');
      expect(await held).toMatchObject({ code: '28000', message: 'unknown tenant "r1"' });
      expect((await admin.query('SHOW TENANTS')).rows.length).toBeGreaterThan(0);
      expect((await other.query<{ n: number }>('select 7 as n')).rows).toEqual([{ n: 7 }]);
    } finally {
      await admin.end();
      await waiting.end().catch(() => undefined);
      await other.end();
      await own.close();
    }
  });

  it('KILL disconnects every client of one tenant with 57P01', async () => {
    const admin = await adminClient();
    const victims = [await connected(as('r3')), await connected(as('r3'))];
    const bystander = await connected(as('r2'));
    const errors: string[] = [];
    for (const v of victims) v.on('error', (e: Error & { code?: string }) => errors.push(e.code ?? e.message));
    const r = await admin.query('KILL r3');
    expect(r.command).toBe('KILL');
    await new Promise((res) => setTimeout(res, 200));
    expect(errors.filter((e) => e === '57P01')).toHaveLength(2);
    expect((await bystander.query<{ n: number }>('select 1 as n')).rows).toEqual([{ n: 1 }]);
    await admin.end();
    await bystander.end();
  });

  it('RELOAD without a config file says so', async () => {
    const admin = await adminClient();
    await expect(admin.query('RELOAD')).rejects.toMatchObject({ message: 'RELOAD needs a config file; this proxy was started without one' });
    await admin.end();
  });
});

describe('pgtenant report', () => {
  it('prints per-tenant usage from the admin port as a table and as CSV', async () => {
    const { usageReportCommand } = await import('../../src/admin/report-cli.js');
    const c = await connected(as('d2'));
    await c.query('select 1');
    await c.query('select 2');
    const url = `http://127.0.0.1:${proxy.adminPort}`;
    const table = await usageReportCommand(url, '1h', false);
    expect(table).toMatch(/^usage from \S+ to \S+$/m);
    expect(table).toMatch(/^d2\s+database\s+1\s+2\s+2\s/m);
    const csv = await usageReportCommand(url, undefined, true);
    expect(csv.split('\n')[0]).toBe('tenant,placement,clients,transactions,queries,errors,blocked,busySeconds,rows,bytes,tps,p50Ms,p99Ms');
    expect(csv).toMatch(/^d2,database,1,2,2,0,0,/m);
    await expect(usageReportCommand(url, 'soon', false)).rejects.toThrow(/invalid window "soon"/);
    await c.end();
  });
});
