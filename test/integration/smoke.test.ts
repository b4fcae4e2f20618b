import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import pg from 'pg';
import type { Proxy } from '../../src/proxy/proxy.js';
import { startProxy, viaProxy } from '../harness/proxy.js';

describe('proxy smoke', () => {
  let proxy: Proxy;
  beforeAll(async () => {
    proxy = await startProxy();
  });
  afterAll(async () => {
    await proxy.close();
  });

  it('runs a query through the proxy as a non-superuser', async () => {
    const client = new pg.Client(viaProxy(proxy));
    await client.connect();
    const r = await client.query('select current_user as u, $1::int + 1 as n', [41]);
    expect(r.rows).toEqual([{ u: 'app', n: 42 }]);
    await client.end();
  });
});
