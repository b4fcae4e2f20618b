/**
 * The admin dashboard (/ on the admin HTTP port) in headless Chromium while real tenants run:
 * the page loads, lists tenants with their placement, keeps updating from /tenants, picks up a
 * tenant that connects later, sorts by tps, draws its charts and never throws. Uses the system
 * Chromium through playwright-core (no browser download); skipped when it is not installed.
 */
import { existsSync } from 'node:fs';
import pg from 'pg';
import { chromium, type Browser, type Page } from 'playwright-core';
import { afterAll, afterEach, beforeAll, beforeEach, describe, expect, it } from 'vitest';
import { configSchema } from '../../src/config/schema.js';
import type { Proxy } from '../../src/proxy/proxy.js';
import { startProxyWith } from '../harness/proxy.js';
import { APP_ROLE, backend } from '../harness/postgres.js';
import { createTenantLayout, tenantConfigInput, type TenantLayout } from '../harness/tenants.js';

const CHROMIUM = '/usr/bin/chromium';
const hasChromium = existsSync(CHROMIUM);

let layout: TenantLayout;
let proxy: Proxy;
let browser: Browser;
let page: Page;
let pageErrors: string[];
const clients: pg.Client[] = [];

async function tenant(name: string): Promise<pg.Client> {
  const c = new pg.Client({ host: '127.0.0.1', port: proxy.port, user: `${APP_ROLE.user}@${name}`, password: APP_ROLE.password, database: APP_ROLE.database });
  c.on('error', () => undefined);
  await c.connect();
  clients.push(c);
  return c;
}

async function run(c: pg.Client, n: number): Promise<void> {
  for (let i = 0; i < n; i++) await c.query('select 1');
}

const dashboardUrl = () => `http://127.0.0.1:${proxy.adminPort}/`;

/** The raw number in one cell of a tenant's row. */
async function cell(tenantId: string, col: string): Promise<number> {
  return Number(await page.locator(`#tenants tr[data-tenant="${tenantId}"] td[data-col="${col}"]`).getAttribute('data-value'));
}

describe.skipIf(!hasChromium)(`admin dashboard in headless Chromium${hasChromium ? '' : ` (skipped: ${CHROMIUM} not found; install it with apt-get install chromium)`}`, () => {
  beforeAll(async () => {
    layout = await createTenantLayout();
    proxy = await startProxyWith(configSchema.parse(tenantConfigInput(layout, { admin: { port: 0, users: [backend().user] } })));
    browser = await chromium.launch({ executablePath: CHROMIUM, args: ['--no-sandbox'] });
  });

  afterAll(async () => {
    await browser?.close();
    for (const c of clients) await c.end().catch(() => undefined);
    await proxy?.close();
    await layout?.drop();
  });

  beforeEach(async () => {
    pageErrors = [];
    page = await browser.newPage();
    page.on('pageerror', (err) => pageErrors.push(`pageerror: ${err.message}`));
    page.on('console', (msg) => {
      if (msg.type() === 'error') pageErrors.push(`console: ${msg.text()}`);
    });
  });

  afterEach(async () => {
    await page.close();
    expect(pageErrors).toEqual([]);
  });

  it('shows live tenants with placement, updates, and picks up new tenants', async () => {
    const r1 = await tenant('r1');
    const s1 = await tenant('s1');
    await run(r1, 3);
    await run(s1, 2);

    const res = await page.goto(dashboardUrl());
    expect(res?.status()).toBe(200);
    expect(await page.title()).toBe('pgtenant dashboard');
    await page.locator('#tenants tr[data-tenant="r1"]').waitFor();
    await page.locator('#tenants tr[data-tenant="s1"]').waitFor();
    expect(await page.locator('#tenants tr[data-tenant="r1"] td[data-col="placement"]').textContent()).toBe('row');
    expect(await page.locator('#tenants tr[data-tenant="s1"] td[data-col="placement"]').textContent()).toBe('schema');
    expect(await cell('r1', 'transactions')).toBeGreaterThanOrEqual(3);
    expect(await cell('r1', 'clients')).toBe(1);
    expect(await page.locator('#tenants tr[data-tenant="r1"] td[data-col="tenant"]').textContent()).toBe('r1');
    expect(await page.locator('#status').textContent()).toBe('live');
    expect(await page.locator('#updated').textContent()).not.toBe('never');
    await page.locator(`#pools tr[data-pool="main/${layout.shared}/app"]`).waitFor();
    expect(Number(await page.locator(`#pools tr[data-pool="main/${layout.shared}/app"] td[data-col="size"]`).getAttribute('data-value'))).toBeGreaterThan(0);
    await page.locator('#tps-chart polyline[data-series="r1"]').waitFor({ state: 'attached' });
    await page.locator('#latency-chart polyline[data-series="backend:main"]').waitFor({ state: 'attached' });
    expect(await page.locator('#tps-legend li[data-series="s1"]').count()).toBe(1);

    // It keeps polling: more work for r1 shows up without a reload, and so does the update time.
    const before = await cell('r1', 'transactions');
    const stamp = await page.locator('#updated').getAttribute('data-time');
    await run(r1, 5);
    await page.waitForFunction(
      (want) => Number(document.querySelector('#tenants tr[data-tenant="r1"] td[data-col="transactions"]')?.getAttribute('data-value')) >= want,
      before + 5,
      { timeout: 10_000 },
    );
    expect(await page.locator('#updated').getAttribute('data-time')).not.toBe(stamp);

    // A tenant that connects after the page opened appears with its placement.
    const d1 = await tenant('d1');
    await run(d1, 1);
    await page.locator('#tenants tr[data-tenant="d1"]').waitFor({ timeout: 10_000 });
    expect(await page.locator('#tenants tr[data-tenant="d1"] td[data-col="placement"]').textContent()).toBe('database');
  });

  it('sorts the busiest tenant by tps first and charts its throughput', async () => {
    const s1 = await tenant('s1');
    await page.goto(dashboardUrl());
    await page.locator('#tenants tr[data-tenant="r1"]').waitFor();
    // Keep s1 busy across a rate sample (every 2 s) until the page ranks it first.
    let busy = true;
    const load = (async () => {
      while (busy) await s1.query('select 1');
    })();
    try {
      // First with a rate: before the first rate sample every tps is 0 and s1 leads on transactions alone.
      await page.waitForFunction(
        () => {
          const first = document.querySelector('#tenants tbody tr');
          return first?.getAttribute('data-tenant') === 's1' && Number(first.querySelector('td[data-col="tps"]')?.getAttribute('data-value')) > 0;
        },
        undefined,
        { timeout: 15_000 },
      );
      // Read while s1 is still busy: once the load stops, the next rate sample may show 0.
      expect(await cell('s1', 'tps')).toBeGreaterThan(0);
      expect(await page.locator('#tps-legend li').first().getAttribute('data-series')).toBe('s1');
      expect(Number(await page.locator('#sum-tps').textContent())).toBeGreaterThan(0);
    } finally {
      busy = false;
      await load;
    }
  });

  it('renders client-supplied names as text, never as markup', async () => {
    // Tenant ids are validated by the proxy, so feed the page a hostile /tenants answer directly.
    const evil = '<img src=x onerror="window.__pwned=1">';
    await page.route('**/tenants', (route) =>
      route.fulfill({
        contentType: 'application/json',
        body: JSON.stringify({
          time: new Date().toISOString(),
          from: new Date().toISOString(),
          tenants: [{ tenant: evil, placement: '<b>row</b>', clients: 1, transactions: 2, queries: 2, errors: 1, blocked: 0, busySeconds: 0.5, rows: 2, bytes: 10, tps: 1.5, p50Ms: 0.4, p99Ms: 1.2 }],
          backends: [{ backend: '<script>x()</script>', transactions: 2, p50Ms: 0.3, p99Ms: 1 }],
          pools: [{ pool: '<i>pool</i>', size: 4, active: 1, idle: 2, waiting: 1 }],
        }),
      }),
    );
    await page.goto(dashboardUrl());
    const row = page.locator('#tenants tbody tr').first();
    await row.waitFor();
    expect(await row.getAttribute('data-tenant')).toBe(evil);
    expect(await row.locator('td[data-col="tenant"]').textContent()).toBe(evil);
    expect(await row.locator('td[data-col="placement"]').textContent()).toBe('<b>row</b>');
    expect(await page.locator('#pools tbody tr td').first().textContent()).toBe('<i>pool</i>');
    expect(await page.locator('#tps-legend li').first().textContent()).toContain(evil);
    expect(await page.locator('#latency-legend').textContent()).toContain('<script>x()</script>');
    expect(await page.locator('img').count()).toBe(0);
    expect(await page.locator('#tenants b, #pools i').count()).toBe(0);
    expect(await page.locator('script').count()).toBe(1);
    expect(await page.evaluate(() => (window as unknown as { __pwned?: number }).__pwned)).toBeUndefined();
  });
});
