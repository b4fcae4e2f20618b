/**
 * Which units of work may run on a replica, decided with the real parser and cached per text:
 * SELECTs that cannot write (no INTO, no FOR UPDATE/SHARE, no data-modifying WITH, no function
 * known to write or to need the primary), SHOW, and transactions opened READ ONLY.
 */
import { parseSync } from 'libpg-query';
import { LRUCache } from 'lru-cache';
import { Frontend } from '../protocol/codes.js';
import { cstringEnd } from '../protocol/read.js';
import { statementText, type PreparedStatement } from '../pool/prepared.js';
import { isNode, lastName, type Node } from '../sql/ast.js';
import { loadParser } from '../sql/parser.js';
import type { Held } from '../client/units.js';

/**
 * Functions a SELECT may call that write, take locks only the primary can coordinate, or fail on a
 * standby. A user-defined function that writes is not known here: call it inside BEGIN … COMMIT
 * (a transaction not opened READ ONLY always runs on the primary).
 */
const PRIMARY_FUNCTIONS = new Set([
  'nextval', 'setval', 'currval', 'lastval',
  'pg_advisory_lock', 'pg_advisory_lock_shared', 'pg_advisory_xact_lock', 'pg_advisory_xact_lock_shared',
  'pg_try_advisory_lock', 'pg_try_advisory_lock_shared', 'pg_try_advisory_xact_lock', 'pg_try_advisory_xact_lock_shared',
  'pg_advisory_unlock', 'pg_advisory_unlock_shared', 'pg_advisory_unlock_all',
  'txid_current', 'pg_current_xact_id', 'pg_current_wal_lsn', 'pg_notify', 'pg_switch_wal', 'pg_create_restore_point',
  'lo_create', 'lo_creat', 'lo_import', 'lo_unlink', 'lo_from_bytea', 'lo_put', 'lo_open', 'lowrite', 'lo_truncate',
  'dblink', 'dblink_exec', 'pg_terminate_backend', 'pg_cancel_backend', 'pg_reload_conf',
]);

/** Tree keys that make a SELECT write or lock rows. */
const WRITING_KEYS = new Set(['InsertStmt', 'UpdateStmt', 'DeleteStmt', 'MergeStmt', 'intoClause', 'lockingClause']);

/** Longer statement texts are not parsed for routing (they run on the primary). */
const MAX_TEXT = 16_384;

/**
 * read: autocommit reads, the batch's connection is given back after it; read-unit: runs on a
 * replica until ReadyForQuery idle (a READ ONLY transaction, or reads a client continues after a
 * Flush); primary: anything else.
 */
export type ReadKind = 'read' | 'read-unit' | 'primary';

export class ReadClassifier {
  private readonly verdicts = new LRUCache<string, ReadKind>({ max: 10_000 });

  static async create(): Promise<ReadClassifier> {
    await loadParser();
    return new ReadClassifier();
  }

  /** The verdict on one statement text (simple-query text may hold several statements). */
  kindOf(sql: string): ReadKind {
    if (sql.length > MAX_TEXT) return 'primary';
    let kind = this.verdicts.get(sql);
    if (kind === undefined) {
      kind = classify(sql);
      this.verdicts.set(sql, kind);
    }
    return kind;
  }

  /**
   * The verdict on the first batch of held messages (up to its Query or Sync) and how many held
   * entries that batch spans; 'primary' when any statement it executes is not a read.
   */
  batchKind(held: readonly Held[], statements: Map<string, PreparedStatement>): { kind: ReadKind; length: number } {
    const first = held[0];
    if (first === undefined || first.kind !== 'message') return { kind: 'primary', length: 0 };
    if (first.type === Frontend.Query) return { kind: this.kindOf(first.buf.toString('utf8', first.start + 5, first.end - 1)), length: 1 };
    let unnamed: string | undefined;
    /** Statements this batch prepares by name (the relay learns them only when it sends the Parse). */
    const parsed = new Map<string, string>();
    let executes = 0;
    let parses = 0;
    for (let i = 0; i < held.length; i++) {
      const h = held[i];
      if (h.kind !== 'message') return { kind: 'primary', length: 0 };
      const { buf, start, end } = h;
      switch (h.type) {
        case Frontend.Parse: {
          const nameEnd = cstringEnd(buf, start + 5, end);
          const textEnd = nameEnd === -1 ? -1 : cstringEnd(buf, nameEnd, end);
          if (textEnd === -1) return { kind: 'primary', length: 0 };
          const text = buf.toString('utf8', nameEnd, textEnd - 1);
          if (this.kindOf(text) !== 'read') return { kind: 'primary', length: 0 };
          parses++;
          if (nameEnd === start + 6) unnamed = text;
          else parsed.set(buf.toString('utf8', start + 5, nameEnd - 1), text);
          break;
        }
        case Frontend.Bind: {
          const portalEnd = cstringEnd(buf, start + 5, end);
          const nameEnd = portalEnd === -1 ? -1 : cstringEnd(buf, portalEnd, end);
          if (nameEnd === -1) return { kind: 'primary', length: 0 };
          const name = buf.toString('utf8', portalEnd, nameEnd - 1);
          const stmt = name === '' ? undefined : statements.get(name);
          const text = name === '' ? unnamed : (parsed.get(name) ?? (stmt === undefined ? undefined : statementText(stmt)));
          if (text === undefined || this.kindOf(text) !== 'read') return { kind: 'primary', length: 0 };
          break;
        }
        case Frontend.Execute:
          executes++;
          break;
        case Frontend.Describe:
        case Frontend.Close:
          break;
        case Frontend.Flush:
          // The client waits for answers, then goes on in the same unit (postgres.js describes first).
          if (i === held.length - 1) return { kind: executes > 0 || parses > 0 ? 'read-unit' : 'primary', length: i + 1 };
          break;
        case Frontend.Sync:
          return { kind: executes > 0 ? 'read' : 'primary', length: i + 1 };
        default:
          return { kind: 'primary', length: 0 };
      }
    }
    return { kind: 'primary', length: 0 };
  }
}

function classify(sql: string): ReadKind {
  let tree: { stmts?: { stmt?: Node }[] };
  try {
    tree = parseSync(sql) as typeof tree;
  } catch {
    return 'primary';
  }
  const stmts = (tree.stmts ?? []).map((s) => s.stmt);
  if (stmts.length === 0 || !stmts.every(isNode)) return 'primary';
  const [kind, body] = Object.entries(stmts[0] as Node)[0] ?? [];
  if (kind === 'TransactionStmt' && isNode(body)) return opensReadOnly(body) ? 'read-unit' : 'primary';
  return stmts.every((s) => readStatement(s as Node)) ? 'read' : 'primary';
}

/** BEGIN / START TRANSACTION with READ ONLY among its options. */
function opensReadOnly(stmt: Node): boolean {
  if (stmt.kind !== 'TRANS_STMT_BEGIN' && stmt.kind !== 'TRANS_STMT_START') return false;
  const options = Array.isArray(stmt.options) ? stmt.options : [];
  return options.some((o: unknown) => {
    const d = isNode(o) && isNode(o.DefElem) ? o.DefElem : undefined;
    const c = d !== undefined && d.defname === 'transaction_read_only' && isNode(d.arg) && isNode(d.arg.A_Const) ? d.arg.A_Const : undefined;
    return c !== undefined && isNode(c.ival) && c.ival.ival === 1;
  });
}

function readStatement(stmt: Node): boolean {
  const [kind, body] = Object.entries(stmt)[0] ?? [];
  if (kind === 'VariableShowStmt') return true;
  return kind === 'SelectStmt' && cannotWrite(body);
}

function cannotWrite(node: unknown): boolean {
  if (Array.isArray(node)) return node.every(cannotWrite);
  if (!isNode(node)) return true;
  for (const [key, value] of Object.entries(node)) {
    if (WRITING_KEYS.has(key)) return false;
    if (key === 'FuncCall' && isNode(value)) {
      const name = lastName(value.funcname);
      if (name === undefined || PRIMARY_FUNCTIONS.has(name)) return false;
    }
    if (!cannotWrite(value)) return false;
  }
  return true;
}
