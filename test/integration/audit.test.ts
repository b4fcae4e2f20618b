/** The proxy writes security-relevant events to the hash-chained audit log, and the chain verifies. */
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import pg from 'pg';
import pino from 'pino';
import { afterAll, beforeAll, expect, it } from 'vitest';
import { verifyAuditFiles } from '../../src/audit/verify.js';
import { configSchema } from '../../src/config/schema.js';
import { Proxy } from '../../src/proxy/proxy.js';
import { APP_ROLE, backend } from '../harness/postgres.js';
import { createTenantLayout, tenantConfigInput, type TenantLayout } from '../harness/tenants.js';

const KEY = 'audit-key-0123456789-abcdef';
let layout: TenantLayout;
let dir: string;

beforeAll(async () => {
  layout = await createTenantLayout();
  dir = mkdtempSync(path.join(tmpdir(), 'pgtenant-audit-'));
});

afterAll(async () => {
  await layout?.drop();
  if (dir) rmSync(dir, { recursive: true, force: true });
});

it('records connections, auth failures, blocked statements, admin actions and reloads in a chain that verifies', async () => {
  const file = path.join(dir, 'audit.log');
  const config = configSchema.parse(tenantConfigInput(layout, { audit: { file, checkpointKey: KEY }, admin: { users: [backend().user] } }));
  const proxy = await Proxy.start(config, pino({ level: 'silent' }));
  const as = (user: string, password: string = APP_ROLE.password, database: string = APP_ROLE.database) => ({ host: '127.0.0.1', port: proxy.port, user, password, database });
  try {
    const c = new pg.Client(as('app@r1'));
    await c.connect();
    await expect(c.query("set app.tenant_id = 'r2'")).rejects.toMatchObject({ code: '42501' });
    await c.end();
    await expect(new pg.Client(as('app@r1', 'wrong')).connect()).rejects.toMatchObject({ code: '28P01' });
    const admin = new pg.Client(as(backend().user, backend().password, 'pgtenant'));
    await admin.connect();
    await admin.query('PAUSE r2');
    await admin.query('RESUME r2');
    await admin.end();
    const next = configSchema.parse(tenantConfigInput(layout, { audit: { file, checkpointKey: KEY }, admin: { users: [backend().user] } }));
    next.tenancy!.tenants.r9 = { placement: 'row', limits: {} };
    await proxy.reload(next);
  } finally {
    await proxy.close();
  }

  const records = readFileSync(file, 'utf8').trim().split('\n').map((l) => JSON.parse(l) as { seq: number; event?: Record<string, unknown>; checkpoint?: unknown });
  const events = records.flatMap((r) => (r.event === undefined ? [] : [r.event]));
  expect(events).toContainEqual(expect.objectContaining({ kind: 'connect', user: 'app', tenant: 'r1', source: 'user' }));
  expect(events).toContainEqual(expect.objectContaining({ kind: 'blocked', tenant: 'r1', reason: expect.stringContaining('app.tenant_id') }));
  expect(events).toContainEqual(expect.objectContaining({ kind: 'disconnect', tenant: 'r1' }));
  expect(events).toContainEqual(expect.objectContaining({ kind: 'auth_failed', user: 'app', code: '28P01' }));
  expect(events).toContainEqual(expect.objectContaining({ kind: 'admin', action: 'pause', tenant: 'r2' }));
  expect(events).toContainEqual(expect.objectContaining({ kind: 'admin', action: 'resume', tenant: 'r2' }));
  expect(events).toContainEqual(expect.objectContaining({ kind: 'reload' }));
  expect(events).toContainEqual(expect.objectContaining({ kind: 'placement', tenant: 'r9', before: null }));
  expect(records.at(-1)?.checkpoint).toBeDefined();
  expect(verifyAuditFiles([file], KEY)).toEqual({ ok: true, records: records.length });

  // One flipped byte inside a record is found at that record (or the next one, naming it).
  const lines = readFileSync(file, 'utf8').split('\n');
  const k = lines.findIndex((l) => l.includes('"auth_failed"'));
  lines[k] = lines[k].replace('"28P01"', '"28P02"');
  writeFileSync(file, lines.join('\n'));
  const result = verifyAuditFiles([file], KEY);
  expect(result.ok).toBe(false);
  if (!result.ok) expect([k + 1, k + 2]).toContain(result.line);
  if (!result.ok && result.line === k + 2) expect(result.reason).toContain(`line ${k + 1}`);
});
