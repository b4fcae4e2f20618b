/**
 * The parser-backed half of the guard: parse with libpg-query (Postgres's own
 * grammar) and walk every statement's whole tree, so a forbidden construct is
 * found at any depth: CTEs, subqueries, PREPARE … AS, EXPLAIN, CREATE VIEW,
 * CREATE RULE actions, defaults and policies.
 *
 * Text that fails to parse is allowed: Postgres parses it with the same
 * grammar and rejects it too, so a parse failure cannot hide a statement
 * Postgres would run. Three exceptions fail closed: resource errors
 * ("memory exhausted", JS stack overflow), where the server's limits may
 * differ from ours; "trailing junk after numeric literal", which servers
 * before PG 15 read as two tokens (`COST 1SET role …`); and settings that make
 * Postgres tokenise differently, which are pinned (policy.ts PINNED).
 */
import { hasSqlDetails, parseSync } from 'libpg-query';
import { constantText, isNode, lastName, lower, type Node, type Reason } from './ast.js';
import { checkCodeBody } from './code.js';
import { needsParser } from './prefilter.js';
import type { SettingPolicy } from './policy.js';

const MAX_NESTING = 6; // code bodies and dynamic SQL inside each other

interface Walk {
  readonly depth: number;
  /** Text of the statement being walked (for PL/pgSQL, which re-parses it). */
  readonly statementText: () => string;
  /** Set inside ALTER ROLE / ALTER DATABASE / function options: names the clause. */
  readonly setClause?: string;
  readonly inView?: boolean;
}

export class Inspector {
  parserCalls = 0;

  constructor(readonly policy: SettingPolicy) {}

  /**
   * `onSyntaxError` decides for text Postgres would reject as a syntax error;
   * by default it is allowed (see the file comment).
   */
  analyse(sql: string, depth: number, onSyntaxError: (sql: string) => Reason = () => null): Reason {
    if (depth > MAX_NESTING) return 'code nested too deeply to check';
    if (depth > 0 && !needsParser(sql, this.policy)) return null;
    let stmts: unknown;
    try {
      this.parserCalls++;
      stmts = parseSync(sql).stmts;
    } catch (err) {
      return parseFailure(err) ?? onSyntaxError(sql);
    }
    if (!Array.isArray(stmts)) return null;
    for (const raw of stmts) {
      if (!isNode(raw)) continue;
      const walk: Walk = { depth, statementText: () => statementText(sql, raw.stmt_location, raw.stmt_len) };
      const reason = this.visit(raw.stmt, walk);
      if (reason !== null) return reason;
    }
    return null;
  }

  private visit(value: unknown, walk: Walk): Reason {
    if (Array.isArray(value)) {
      for (const item of value) {
        const reason = this.visit(item, walk);
        if (reason !== null) return reason;
      }
      return null;
    }
    if (!isNode(value)) return null;
    for (const key in value) {
      const child = value[key];
      if (!isNode(child)) continue;
      const reason = this.visitNode(key, child, walk);
      if (reason !== null) return reason;
    }
    return null;
  }

  /**
   * `key` is the node type for a wrapped node ({ FuncCall: {…} }), or a field
   * name: fields typed as one struct (RangeVar *relation) hold it unwrapped.
   */
  private visitNode(key: string, node: Node, walk: Walk): Reason {
    switch (key) {
      case 'VariableSetStmt':
      case 'setstmt': // field of ALTER ROLE/DATABASE/SYSTEM: an unwrapped VariableSetStmt
        return this.checkSet(node, walk.setClause);
      case 'funccall': // field of CALL: an unwrapped FuncCall
        return this.visitNode('FuncCall', node, walk);
      case 'DiscardStmt':
        return node.target === 'DISCARD_ALL' ? 'DISCARD ALL is not allowed' : null;
      case 'FuncCall': {
        if (lastName(node.funcname) === 'set_config') {
          const reason = this.checkSetConfig(node.args);
          if (reason !== null) return reason;
        }
        for (const field in node) {
          if (field === 'funcname') continue;
          const reason = this.visit(node[field], walk);
          if (reason !== null) return reason;
        }
        return null;
      }
      case 'String':
        // set_config named outside a call: CREATE AGGREGATE … (SFUNC = set_config),
        // CREATE FUNCTION … AS 'set_config_by_name' LANGUAGE internal, and so on.
        return lower(node.sval) === 'set_config' ? 'a reference to set_config is not allowed' : null;
      case 'ColumnRef':
        return null; // column names; functional notation x.f needs a one-argument f
      case 'UpdateStmt':
      case 'InsertStmt':
      case 'DeleteStmt':
      case 'MergeStmt':
        if (relationName(node.relation) === 'pg_settings') {
          return `${key.replace('Stmt', '').toUpperCase()} of pg_settings is not allowed (its update rule calls set_config)`;
        }
        break;
      case 'ViewStmt':
        return this.visit(node, { ...walk, inView: true });
      case 'RangeVar':
        return walk.inView && relationName(node) === 'pg_settings'
          ? 'a view over pg_settings is not allowed (updating it would call set_config)'
          : null;
      case 'AlterRoleSetStmt':
        return this.visit(node, { ...walk, setClause: 'ALTER ROLE' });
      case 'AlterDatabaseSetStmt':
        return this.visit(node, { ...walk, setClause: 'ALTER DATABASE' });
      case 'AlterSystemStmt':
        return this.visit(node, { ...walk, setClause: 'ALTER SYSTEM' });
      case 'AlterFunctionStmt':
        return this.visit(node, { ...walk, setClause: `ALTER ${objectKind(node.objtype)}` });
      case 'CreateFunctionStmt': {
        const what = node.is_procedure === true ? 'CREATE PROCEDURE' : 'CREATE FUNCTION';
        return this.visit(node, { ...walk, setClause: what })
          ?? checkCodeBody(this, `${what} body`, options(node.options), walk.statementText, walk.depth);
      }
      case 'DoStmt':
        return this.visit(node, walk)
          ?? checkCodeBody(this, 'DO block', options(node.args), walk.statementText, walk.depth, 'plpgsql');
    }
    return this.visit(node, walk);
  }

  private checkSet(stmt: Node, clause: string | undefined): Reason {
    const where = clause === undefined ? '' : `${clause} … `;
    if (stmt.kind === 'VAR_RESET_ALL') return `${where}RESET ALL is not allowed`;
    const name = lower(stmt.name);
    if (name === undefined) return null;
    const verb = stmt.kind === 'VAR_RESET' ? 'RESET' : 'SET';
    if (this.policy.isProtected(name)) {
      const what = name === 'role' ? `${verb} ROLE`
        : name === 'session_authorization' ? `${verb} SESSION AUTHORIZATION`
          : `${verb} of ${name}`;
      return `${where}${what} is not allowed`;
    }
    if (stmt.kind !== 'VAR_SET_VALUE') return null; // DEFAULT, FROM CURRENT, RESET keep pinned values safe
    const args = Array.isArray(stmt.args) ? stmt.args : [];
    const violation = this.policy.pinnedViolation(name, args.length === 1 ? constantText(args[0]) : undefined);
    return violation === null ? null : `${where}SET of ${name} is not allowed here: ${violation}`;
  }

  private checkSetConfig(args: unknown): Reason {
    const name = constantText(argument(args, 0, 'setting_name'));
    if (name === undefined) return 'set_config() with a setting name that is not a string constant is not allowed';
    const lowerName = name.toLowerCase(); // Postgres compares GUC names case-insensitively
    if (this.policy.isProtected(lowerName)) return `set_config() of ${lowerName} is not allowed`;
    const violation = this.policy.pinnedViolation(lowerName, constantText(argument(args, 1, 'new_value')));
    return violation === null ? null : `set_config() of ${lowerName} is not allowed here: ${violation}`;
  }
}

function parseFailure(err: unknown): Reason {
  if (!hasSqlDetails(err)) return 'statement could not be checked'; // e.g. stack overflow reading a deep tree
  const message = err.message;
  if (/memory exhausted|stack depth|out of memory/i.test(message)) return 'statement too complex to check';
  if (/trailing junk/i.test(message)) {
    return 'a number directly followed by a word is not allowed here (servers before PG 15 read it as two tokens)';
  }
  return null;
}

/** libpg-query locations are byte offsets into the UTF-8 text; a missing length means "to the end". */
function statementText(sql: string, location: unknown, length: unknown): string {
  const start = typeof location === 'number' ? location : 0;
  const end = typeof length === 'number' && length > 0 ? start + length : undefined;
  if (/^[\x00-\x7f]*$/.test(sql)) return sql.slice(start, end);
  return Buffer.from(sql, 'utf8').subarray(start, end).toString('utf8');
}

/** The argument at `position`, or the named one (set_config(setting_name => …)). */
function argument(args: unknown, position: number, name: string): unknown {
  if (!Array.isArray(args)) return undefined;
  const positional = args[position];
  if (isNode(positional) && !('NamedArgExpr' in positional)) return positional;
  for (const arg of args) {
    const named = isNode(arg) ? arg.NamedArgExpr : undefined;
    if (isNode(named) && lower(named.name) === name) return named.arg;
  }
  return undefined;
}

function relationName(rangeVar: unknown): string | undefined {
  return isNode(rangeVar) ? lower(rangeVar.relname) : undefined;
}

function objectKind(objtype: unknown): string {
  if (objtype === 'OBJECT_PROCEDURE') return 'PROCEDURE';
  if (objtype === 'OBJECT_ROUTINE') return 'ROUTINE';
  return 'FUNCTION';
}

/** DefElem list → name → argument node. */
function options(list: unknown): Map<string, unknown> {
  const out = new Map<string, unknown>();
  if (!Array.isArray(list)) return out;
  for (const item of list) {
    const def = isNode(item) ? item.DefElem : undefined;
    if (isNode(def) && typeof def.defname === 'string') out.set(def.defname, def.arg);
  }
  return out;
}
