import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import pg from 'pg';
import type { Proxy } from '../../src/proxy/proxy.js';
import { freePort } from '../harness/ports.js';
import { APP_ROLE, adminClient, uniqueName } from '../harness/postgres.js';
import { startProxy, testConfigInput, viaProxy } from '../harness/proxy.js';
import { RawClient, errorFields, startupPacket } from '../harness/raw-client.js';

const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms));

/** Logins that must exist on the backend too: the proxy logs in there with the user's plaintext password. */
const MD5 = { user: uniqueName('err_md5'), password: 'md5-pw' };
const CLEARTEXT = { user: uniqueName('err_clear'), password: 'clear-pw' };
const TRUST = { user: uniqueName('err_trust'), password: 'trust-pw' };
const ROLES = [MD5, CLEARTEXT, TRUST];

/** Connects; resolves to the error (if any), closing the client either way. */
async function tryLogin(opts: pg.ClientConfig): Promise<(Error & { code?: string }) | undefined> {
  const client = new pg.Client(opts);
  client.on('error', () => undefined);
  try {
    await client.connect();
    const { rows } = await client.query<{ one: number }>('select 1 as one');
    expect(rows).toEqual([{ one: 1 }]);
    await client.end();
    return undefined;
  } catch (err) {
    await client.end().catch(() => undefined);
    return err as Error & { code?: string };
  }
}

async function connected(opts: pg.ClientConfig, errors?: Error[]): Promise<pg.Client> {
  const client = new pg.Client(opts);
  client.on('error', (err) => errors?.push(err));
  await client.connect();
  return client;
}

describe('errors', () => {
  let proxy: Proxy;

  beforeAll(async () => {
    const admin = await adminClient();
    try {
      for (const r of ROLES) await admin.query(`create role ${r.user} login password '${r.password}'`);
    } finally {
      await admin.end();
    }
    const base = testConfigInput();
    proxy = await startProxy({
      listen: { host: '127.0.0.1', port: 0, allowCleartextWithoutTls: true },
      users: {
        ...(base.users as Record<string, unknown>),
        [MD5.user]: { password: MD5.password, auth: 'md5' },
        [CLEARTEXT.user]: { password: CLEARTEXT.password, auth: 'cleartext' },
        [TRUST.user]: { password: TRUST.password, auth: 'trust' },
      },
    });
  });

  afterAll(async () => {
    await proxy?.close();
    const admin = await adminClient();
    try {
      for (const r of ROLES) await admin.query(`drop role if exists ${r.user}`);
    } finally {
      await admin.end();
    }
  });

  describe('authentication', () => {
    it('SCRAM: right password works, wrong password gets 28P01', async () => {
      expect(await tryLogin(viaProxy(proxy))).toBeUndefined();
      const err = await tryLogin(viaProxy(proxy, APP_ROLE.user, 'not-the-password'));
      expect(err?.code).toBe('28P01');
    });

    it('md5: right password works, wrong password gets 28P01', async () => {
      expect(await tryLogin(viaProxy(proxy, MD5.user, MD5.password))).toBeUndefined();
      const err = await tryLogin(viaProxy(proxy, MD5.user, 'wrong'));
      expect(err?.code).toBe('28P01');
    });

    it('cleartext (allowed without TLS): right password works, wrong password gets 28P01', async () => {
      expect(await tryLogin(viaProxy(proxy, CLEARTEXT.user, CLEARTEXT.password))).toBeUndefined();
      const err = await tryLogin(viaProxy(proxy, CLEARTEXT.user, 'wrong'));
      expect(err?.code).toBe('28P01');
    });

    it('unknown user gets 28P01', async () => {
      const err = await tryLogin(viaProxy(proxy, uniqueName('nobody'), 'whatever'));
      expect(err?.code).toBe('28P01');
    });
  });

  describe('unreachable backend', () => {
    it('gives 08001 within the connect timeout while a working proxy keeps serving', async () => {
      const deadPort = await freePort();
      const bad = await startProxy({ backends: { main: { host: '127.0.0.1', port: deadPort, connectTimeout: '1s' } } });
      try {
        const started = Date.now();
        const err = await tryLogin(viaProxy(bad));
        const elapsed = Date.now() - started;
        expect(err?.code).toBe('08001');
        expect(elapsed).toBeLessThan(3000);

        // Hammer the bad proxy while the good one keeps answering.
        const good = await connected(viaProxy(proxy));
        try {
          let stop = false;
          const hammer = (async () => {
            const codes: (string | undefined)[] = [];
            while (!stop) {
              const batch = await Promise.all(Array.from({ length: 20 }, () => tryLogin(viaProxy(bad))));
              codes.push(...batch.map((e) => e?.code));
            }
            return codes;
          })();
          for (let i = 0; i < 200; i++) {
            const { rows } = await good.query<{ n: number }>('select $1::int as n', [i]);
            expect(rows).toEqual([{ n: i }]);
          }
          await sleep(200);
          stop = true;
          const codes = await hammer;
          expect(codes.length).toBeGreaterThan(0);
          expect(new Set(codes)).toEqual(new Set(['08001']));
        } finally {
          await good.end();
        }
      } finally {
        await bad.close();
      }
    });
  });

  describe('server connection killed mid-transaction', () => {
    it('fails that client with 08006 and leaves a concurrent client alone', async () => {
      const victimErrors: Error[] = [];
      const victim = await connected(viaProxy(proxy), victimErrors);
      const victimEnded = new Promise<void>((resolve) => {
        victim.once('end', () => resolve());
        setTimeout(resolve, 3000).unref();
      });
      const bystander = await connected(viaProxy(proxy));
      const admin = await adminClient();
      let stop = false;
      let busy: Promise<void> = Promise.resolve();
      try {
        let completed = 0;
        busy = (async () => {
          while (!stop) {
            const { rows } = await bystander.query<{ n: number }>('select $1::int + 1 as n', [completed]);
            expect(rows[0].n).toBe(completed + 1);
            completed++;
          }
        })();

        await victim.query('BEGIN');
        const { rows } = await victim.query<{ pid: number }>('select pg_backend_pid() as pid');
        const serverPid = rows[0].pid;
        const before = completed;
        const killed = await admin.query<{ ok: boolean }>('select pg_terminate_backend($1) as ok', [serverPid]);
        expect(killed.rows).toEqual([{ ok: true }]);

        const queryErr = await victim.query('select 1').then(
          () => undefined,
          (e: unknown) => e as Error & { code?: string },
        );
        expect(queryErr).toBeDefined();
        // Whatever else the proxy tells the victim arrives before it closes the connection.
        await victimEnded;
        const all: Array<Error & { code?: string }> = [queryErr!, ...victimErrors];
        const summary = all.map((e) => `${e.code ?? '-'} ${e.message}`).join(' | ');
        // The proxy reports the lost server connection as 08006; the driver may instead see the socket end.
        expect(all.some((e) => e.code === '08006' || /Connection terminated/i.test(e.message)), summary).toBe(true);

        // The bystander kept completing queries through and after the kill.
        await sleep(300);
        stop = true;
        await busy;
        expect(completed).toBeGreaterThan(before);
        const after = await bystander.query<{ ok: boolean }>('select true as ok');
        expect(after.rows).toEqual([{ ok: true }]);
      } finally {
        stop = true;
        await busy.catch(() => undefined);
        await admin.end();
        await victim.end().catch(() => undefined);
        await bystander.end();
      }
    });
  });

  describe('malformed input', () => {
    it('answers a startup packet with a bad length with 08P01 and keeps serving others', async () => {
      const raw = new RawClient(proxy.port);
      await raw.connected();
      const bad = Buffer.alloc(8);
      bad.writeInt32BE(3, 0); // shorter than the length field itself
      bad.writeInt32BE(196608, 4);
      raw.write(bad);
      const e = await raw.waitFor('E');
      const fields = errorFields(e.body);
      expect(fields.C).toBe('08P01');
      expect(fields.S).toBe('FATAL');
      await raw.closed;

      expect(await tryLogin(viaProxy(proxy))).toBeUndefined();
    });

    it('answers a typed message with length 2 after login with 08P01 and keeps serving others', async () => {
      const raw = new RawClient(proxy.port);
      await raw.connected();
      raw.write(startupPacket({ user: TRUST.user, database: APP_ROLE.database }));
      await raw.waitFor('Z');
      expect(raw.messages.find((m) => m.type === 'R')?.body.readInt32BE(0)).toBe(0); // AuthenticationOk, no password asked
      expect(raw.messages.some((m) => m.type === 'E')).toBe(false);

      raw.write(Buffer.from([0x51 /* Q */, 0, 0, 0, 2]));
      const e = await raw.waitFor('E');
      const fields = errorFields(e.body);
      expect(fields.C).toBe('08P01');
      await raw.closed;

      const other = await connected(viaProxy(proxy));
      try {
        const { rows } = await other.query<{ u: string }>('select current_user as u');
        expect(rows).toEqual([{ u: APP_ROLE.user }]);
      } finally {
        await other.end();
      }
    });
  });
});
