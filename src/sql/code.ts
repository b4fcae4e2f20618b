/**
 * Code bodies: DO blocks and CREATE FUNCTION/PROCEDURE … AS '…'.
 *
 * - LANGUAGE sql bodies are parsed and checked like any statement text.
 * - PL/pgSQL is parsed with libpg-query's PL/pgSQL parser; every embedded
 *   statement and expression is checked exactly, and dynamic SQL whose text
 *   is a constant (EXECUTE 'se' || 't role x', E'\x73et …') is folded and
 *   checked too.
 * - Anything else (other languages, PL/pgSQL our parser rejects) gets a text
 *   heuristic: blocked when it mentions set_config, or SET/RESET together with
 *   a protected name.
 *
 * Residual risk, by nature of the problem: dynamic SQL whose text is only
 * known at run time (EXECUTE format('se%s', 't') …, chr(115) || …, a string
 * read from a table) can still change a setting. A PL/pgSQL body with such
 * dynamic SQL is blocked only when its text mentions a protected setting
 * change. Functions that already exist in the database are not inspected.
 * RLS policies must fail closed; the stronger fix is a per-tenant login role
 * or a signed context (design.md §5, reference/isolation.md §B).
 */
import { parsePlPgSQLSync, parseSync } from 'libpg-query';
import { constantText, isNode, lastName, type Node, type Reason } from './ast.js';
import type { Inspector } from './inspect.js';
import { expressionMentionsSetConfig, mentionsContextChange } from './prefilter.js';

/** PL/pgSQL statements that run a string as SQL → field holding that string's expression. */
const DYNAMIC_SQL = new Map([
  ['PLpgSQL_stmt_dynexecute', 'query'],
  ['PLpgSQL_stmt_dynfors', 'query'],
  ['PLpgSQL_stmt_open', 'dynquery'],
  ['PLpgSQL_stmt_return_query', 'dynquery'],
]);

/** PLpgSQL_expr.parseMode 0 (RAW_PARSE_DEFAULT) is a whole statement; the rest are expressions. */
const STATEMENT_MODE = 0;

export function checkCodeBody(
  inspector: Inspector,
  label: string,
  options: Map<string, unknown>,
  statementText: () => string,
  depth: number,
  defaultLanguage?: string,
): Reason {
  const body = bodyText(options.get('as'));
  if (body === undefined) return null; // BEGIN ATOMIC bodies are part of the tree already walked
  const languageNode = options.get('language');
  const language = isNode(languageNode) && isNode(languageNode.String) && typeof languageNode.String.sval === 'string'
    ? languageNode.String.sval.toLowerCase()
    : defaultLanguage;
  let reason: Reason;
  if (language === 'sql') {
    reason = inspector.analyse(body, depth + 1);
  } else if (language === 'plpgsql') {
    reason = checkPlpgsql(inspector, statementText(), body, depth + 1);
  } else {
    const mention = mentionsContextChange(body, inspector.policy);
    reason = mention === null ? null : `${mention} (language ${language ?? 'unknown'} is not checked exactly)`;
  }
  return reason === null ? null : `${label}: ${reason}`;
}

function checkPlpgsql(inspector: Inspector, statement: string, body: string, depth: number): Reason {
  let tree: unknown;
  try {
    inspector.parserCalls++;
    tree = parsePlPgSQLSync(statement);
  } catch {
    // Postgres would most likely reject it too, but our PL/pgSQL parser lacks
    // the catalog, so fall back to the text heuristic rather than allow.
    const mention = mentionsContextChange(body, inspector.policy);
    return mention === null ? null : `${mention} (the body could not be parsed for an exact check)`;
  }
  let runtimeSql = false;

  const checkExpr = (expr: Node): Reason => {
    const query = expr.query;
    if (typeof query !== 'string') return null;
    if ((expr.parseMode ?? STATEMENT_MODE) === STATEMENT_MODE) return inspector.analyse(query, depth);
    // Expressions parse as a select list; assignments (x := …) do not, and
    // fall back to the only ways an expression can change a setting.
    return inspector.analyse(`SELECT ${query}`, depth, () => expressionMentionsSetConfig(query));
  };

  const checkDynamic = (exprNode: unknown): Reason => {
    const expr = isNode(exprNode) ? exprNode.PLpgSQL_expr : undefined;
    if (!isNode(expr) || typeof expr.query !== 'string') return null;
    const sql = foldConstant(inspector, expr.query);
    if (sql === undefined) {
      runtimeSql = true;
      return null;
    }
    const reason = inspector.analyse(sql, depth);
    return reason === null ? null : `dynamic SQL: ${reason}`;
  };

  const visit = (value: unknown): Reason => {
    if (Array.isArray(value)) {
      for (const item of value) {
        const reason = visit(item);
        if (reason !== null) return reason;
      }
      return null;
    }
    if (!isNode(value)) return null;
    for (const key in value) {
      const child = value[key];
      if (!isNode(child)) continue;
      const dynamicField = DYNAMIC_SQL.get(key);
      const reason = key === 'PLpgSQL_expr' ? checkExpr(child)
        : (dynamicField !== undefined ? checkDynamic(child[dynamicField]) : null) ?? visit(child);
      if (reason !== null) return reason;
    }
    return null;
  };

  const reason = visit(tree);
  if (reason !== null || !runtimeSql) return reason;
  const mention = mentionsContextChange(body, inspector.policy);
  return mention === null ? null : `runs dynamic SQL built at run time and ${mention}`;
}

/** The string an expression always evaluates to, when it is made of literals joined by ||. */
function foldConstant(inspector: Inspector, expression: string): string | undefined {
  let stmts: unknown;
  try {
    inspector.parserCalls++;
    stmts = parseSync(`SELECT ${expression}`).stmts;
  } catch {
    return undefined;
  }
  if (!Array.isArray(stmts) || stmts.length !== 1) return undefined;
  const first: unknown = stmts[0];
  const select = isNode(first) && isNode(first.stmt) ? first.stmt.SelectStmt : undefined;
  if (!isNode(select) || !Array.isArray(select.targetList) || select.targetList.length !== 1) return undefined;
  if (select.fromClause !== undefined || select.whereClause !== undefined) return undefined;
  const target: unknown = select.targetList[0];
  return isNode(target) && isNode(target.ResTarget) ? fold(target.ResTarget.val) : undefined;
}

function fold(node: unknown): string | undefined {
  const direct = constantText(node);
  if (direct !== undefined) return direct;
  const op = isNode(node) ? node.A_Expr : undefined;
  if (!isNode(op) || op.kind !== 'AEXPR_OP' || lastName(op.name) !== '||') return undefined;
  const left = fold(op.lexpr);
  const right = left === undefined ? undefined : fold(op.rexpr);
  return left === undefined || right === undefined ? undefined : left + right;
}

/** AS 'body' is a String; AS 'obj_file', 'symbol' a List of them. */
function bodyText(as: unknown): string | undefined {
  if (!isNode(as)) return undefined;
  if (isNode(as.String)) return typeof as.String.sval === 'string' ? as.String.sval : '';
  const list = as.List;
  if (!isNode(list) || !Array.isArray(list.items)) return undefined;
  return list.items.map((item: unknown) => (isNode(item) && isNode(item.String) ? String(item.String.sval ?? '') : '')).join('\n');
}
