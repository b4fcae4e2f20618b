/**
 * Statement guard cost per check(), in ns/op:
 *   npx tsx bench/guard.ts
 * pre-filtered: decided by the text pre-filter alone (no cache, no parser);
 * cached: needs the parser, verdict found in the LRU;
 * uncached: a new text every time, parsed and walked (plus fingerprint when blocked).
 */
import { StatementGuard } from '../src/sql/guard.js';

const guard = await StatementGuard.create({ tenantSetting: 'app.tenant_id', protectSearchPath: true, cacheSize: 10_000 });

function nsPerOp(texts: string[], iterations: number): number {
  let sink = 0;
  const run = (n: number): void => {
    for (let i = 0; i < n; i++) if (guard.check(texts[i % texts.length]) !== null) sink++;
  };
  run(Math.min(iterations, 2_000)); // warm up the JIT
  const start = process.hrtime.bigint();
  run(iterations);
  const ns = Number(process.hrtime.bigint() - start) / iterations;
  if (sink < 0) console.log(sink);
  return ns;
}

const unique = (n: number, make: (i: number) => string): string[] => Array.from({ length: n }, (_, i) => make(i));

const cases: [string, () => number][] = [
  ['pre-filtered SELECT (pgbench -S, extended)', () => nsPerOp(['SELECT abalance FROM pgbench_accounts WHERE aid = $1;'], 2_000_000)],
  ['pre-filtered SELECT, 300 chars', () => nsPerOp([
    'SELECT o.id, o.created_at, o.total, c.name, c.email, a.street, a.city FROM orders o JOIN customers c ON c.id = o.customer_id ' +
    'LEFT JOIN addresses a ON a.id = o.shipping_address_id WHERE o.tenant_id = $1 AND o.created_at > now() - interval \'7 days\' ORDER BY o.created_at DESC LIMIT 50',
  ], 1_000_000)],
  ['pre-filtered UPDATE … SET', () => nsPerOp(['UPDATE items SET name = $1, updated_at = now() WHERE id = $2'], 2_000_000)],
  ['cached verdict (allowed: UPDATE users SET role = …)', () => nsPerOp(["UPDATE users SET role = 'admin' WHERE id = $1"], 2_000_000)],
  ['cached verdict (blocked: SET app.tenant_id)', () => nsPerOp(["SET app.tenant_id = 'b'"], 2_000_000)],
  ['uncached parse (allowed, distinct texts)', () => nsPerOp(unique(40_000, (i) => `UPDATE users SET role = 'admin' WHERE id = ${i}`), 40_000)],
  ['uncached parse (blocked, + fingerprint)', () => nsPerOp(unique(40_000, (i) => `SET app.tenant_id = 't${i}'`), 40_000)],
  ['uncached DO block (PL/pgSQL parse)', () => nsPerOp(unique(10_000, (i) => `DO $$ BEGIN UPDATE users SET role = 'r${i}' WHERE id = ${i}; END $$`), 10_000)],
];

console.log(`node ${process.version}, ${process.arch}`);
for (const [name, run] of cases) console.log(`${name.padEnd(52)} ${run().toFixed(0).padStart(8)} ns/op`);
console.log('stats', guard.stats);
