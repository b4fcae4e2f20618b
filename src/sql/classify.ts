/**
 * Which statements may share a pipelined server connection with other clients' statements: only
 * complete autocommit reads that cannot change or read session state nor wait for row locks
 * (design.md §6). Decided with
 * the real parser, cached per statement shape, together with the shape's measured latency.
 */
import { parseSync } from 'libpg-query';
import { LRUCache } from 'lru-cache';
import { isNode, lastName, type Node } from './ast.js';
import { loadParser } from './parser.js';
import { Histogram } from '../stats/histogram.js';

/** Statement kinds that are complete units by themselves (no BEGIN, no SET, no utility); of them only reads share. */
const UNIT_STATEMENTS = new Set(['SelectStmt', 'InsertStmt', 'UpdateStmt', 'DeleteStmt']);

/** Functions that neither read nor change session state. Anything else keeps its connection. */
const PURE_FUNCTIONS = new Set(['count', 'sum', 'avg', 'min', 'max', 'coalesce', 'nullif', 'greatest', 'least', 'lower', 'upper', 'length', 'abs', 'round', 'now', 'date_trunc', 'array_agg', 'string_agg', 'jsonb_build_object', 'json_build_object', 'to_char', 'extract']);

/** Built-in operators; a user-defined one could call anything. */
const PLAIN_OPERATORS = new Set(['=', '<>', '!=', '<', '>', '<=', '>=', '+', '-', '*', '/', '%', '||', '~~', '!~~', '~~*', '!~~*', '~', '!~', '~*', '!~*']);

/** Normalizing simple-query text is only attempted for text without these (escapes, quoting, comments). */
const UNUSUAL = /[\\$&"]|--|\/\*/;

export interface ShapeStats {
  /** May share a pipelined connection: an autocommit read that cannot change or read session state nor wait for row locks. */
  shareable: boolean;
  /**
   * Cannot change session state, so a tenant binding sent before it stays in place: the shareable
   * statements, and transaction control (BEGIN, COMMIT, ROLLBACK, savepoints), which only undoes
   * changes made inside the transaction, and the binding is always sent before one starts.
   */
  pure: boolean;
  /** Peak-sensitive moving average of the unit's latency (ms); NaN before the first run. */
  latencyMs: number;
  runs: number;
  /** Every measured run (seconds); made at the first one. */
  latency: Histogram | null;
}

/** One statement shape as SHOW STATEMENTS lists it. */
export interface ShapeReport {
  shape: string;
  shareable: boolean;
  runs: number;
  latencyMs: number;
  p50Ms: number;
  p99Ms: number;
}

export class UnitClassifier {
  private readonly shapes = new LRUCache<string, ShapeStats>({ max: 10_000 });

  static async create(): Promise<UnitClassifier> {
    await loadParser();
    return new UnitClassifier();
  }

  /**
   * The shape key of a statement text: extended-protocol text as it is (parameters are already
   * out of it), simple-query text with literals replaced. undefined: never shared.
   */
  shapeOf(sql: string, simple: boolean): string | undefined {
    if (!simple) return sql;
    if (sql.length > 4096 || UNUSUAL.test(sql)) return undefined;
    return sql.replace(/'[^']*'/g, '?').replace(/\b\d+(?:\.\d+)?\b/g, '?');
  }

  /** Stats of a shape, classifying it on first sight. */
  stats(shape: string, sql: string): ShapeStats {
    let s = this.shapes.get(shape);
    if (s === undefined) {
      s = { ...classify(sql), latencyMs: Number.NaN, runs: 0, latency: null };
      this.shapes.set(shape, s);
    }
    return s;
  }

  /** Records a unit's latency: rises at once, decays slowly (peak-EWMA style). */
  record(stats: ShapeStats, ms: number): void {
    stats.runs++;
    stats.latencyMs = Number.isNaN(stats.latencyMs) || ms > stats.latencyMs ? ms : stats.latencyMs * 0.9 + ms * 0.1;
    (stats.latency ??= new Histogram()).observe(ms / 1000);
  }

  /** The `limit` most run shapes that have been measured, most run first. */
  report(limit: number): ShapeReport[] {
    const out: ShapeReport[] = [];
    for (const [shape, s] of this.shapes.entries()) {
      if (s.latency === null) continue;
      out.push({ shape, shareable: s.shareable, runs: s.runs, latencyMs: s.latencyMs, p50Ms: s.latency.quantile(0.5) * 1000, p99Ms: s.latency.quantile(0.99) * 1000 });
    }
    return out.sort((a, b) => b.runs - a.runs).slice(0, limit);
  }
}

const NEITHER = { shareable: false, pure: false };

function classify(sql: string): { shareable: boolean; pure: boolean } {
  let tree: { stmts?: { stmt?: Node }[] };
  try {
    tree = parseSync(sql) as typeof tree;
  } catch {
    return NEITHER;
  }
  const stmts = tree.stmts ?? [];
  if (stmts.length !== 1 || !isNode(stmts[0].stmt)) return NEITHER;
  const [kind, body] = Object.entries(stmts[0].stmt)[0] ?? [];
  if (kind === 'TransactionStmt') return { shareable: false, pure: true };
  if (kind === undefined || !UNIT_STATEMENTS.has(kind)) return NEITHER;
  if (kind === 'SelectStmt' && isNode(body) && body.intoClause !== undefined) return NEITHER;
  const p = pure(body);
  return { shareable: p && kind === 'SelectStmt' && !mayWaitForRowLocks(body), pure: p };
}

/** Statements that write rows or lock them for a later write. */
const WRITES = new Set(['InsertStmt', 'UpdateStmt', 'DeleteStmt', 'MergeStmt']);

/**
 * A write or a locking read (FOR UPDATE/SHARE) anywhere in the tree, CTEs and subqueries
 * included. It may wait for another transaction's row lock for as long as that transaction
 * lasts, and on a shared connection every unit pipelined behind it would wait too: if one of them
 * is what the lock holder waits for, nothing moves until a timeout.
 */
function mayWaitForRowLocks(node: unknown): boolean {
  if (Array.isArray(node)) return node.some(mayWaitForRowLocks);
  if (!isNode(node)) return false;
  for (const [key, value] of Object.entries(node)) {
    if (WRITES.has(key)) return true;
    if (key === 'lockingClause' && Array.isArray(value) && value.length > 0) return true;
    if (mayWaitForRowLocks(value)) return true;
  }
  return false;
}

/** No function or operator beyond the plain ones anywhere in the tree. */
function pure(node: unknown): boolean {
  if (Array.isArray(node)) return node.every(pure);
  if (!isNode(node)) return true;
  for (const [key, value] of Object.entries(node)) {
    if (key === 'FuncCall') {
      const name = isNode(value) ? lastName(value.funcname) : undefined;
      if (name === undefined || !PURE_FUNCTIONS.has(name)) return false;
    } else if (key === 'A_Expr' && isNode(value)) {
      const op = lastName(value.name);
      if (value.kind === 'AEXPR_OP' && (op === undefined || !PLAIN_OPERATORS.has(op))) return false;
    } else if (key === 'RangeFunction' || key === 'CoerceViaIO') {
      return false;
    }
    if (!pure(value)) return false;
  }
  return true;
}
