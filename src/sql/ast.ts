/** Reading libpg-query's JSON parse trees: nodes are { TypeName: { field: … } }. */

export type Node = { [key: string]: unknown };

/** Why a statement is refused; null when it is allowed. */
export type Reason = string | null;

export function isNode(x: unknown): x is Node {
  return typeof x === 'object' && x !== null;
}

export function lower(x: unknown): string | undefined {
  return typeof x === 'string' ? x.toLowerCase() : undefined;
}

/**
 * The value of a constant: a literal, or a literal cast to pg_catalog.text or
 * pg_catalog.varchar without a length. Other casts can change the value:
 * char(n) strips trailing blanks, varchar(n) truncates, and an unqualified
 * `text` may be a domain found earlier in search_path. (`::varchar` parses as
 * pg_catalog.varchar; write `::pg_catalog.text` for text.) undefined when not
 * a constant.
 */
export function constantText(node: unknown): string | undefined {
  if (!isNode(node)) return undefined;
  const constant = node.A_Const;
  if (isNode(constant)) {
    // Empty values are omitted from the JSON: { sval: {} } is ''.
    if (isNode(constant.sval)) return typeof constant.sval.sval === 'string' ? constant.sval.sval : '';
    if (isNode(constant.ival)) return String(constant.ival.ival ?? 0);
    if (isNode(constant.fval)) return typeof constant.fval.fval === 'string' ? constant.fval.fval : undefined;
    if (isNode(constant.boolval)) return constant.boolval.boolval === true ? 'true' : 'false';
    return undefined;
  }
  const cast = node.TypeCast;
  if (isNode(cast) && isNode(cast.typeName)) {
    const type = cast.typeName;
    const plain = type.typmods === undefined && type.arrayBounds === undefined && type.setof !== true;
    const names = Array.isArray(type.names) ? type.names.map(identifier) : [];
    const safeType = names.length === 2 && names[0] === 'pg_catalog' && (names[1] === 'text' || names[1] === 'varchar');
    if (plain && safeType) return constantText(cast.arg);
  }
  return undefined;
}

/** Lower-cased last identifier of a qualified name list ([pg_catalog, set_config]). */
export function lastName(names: unknown): string | undefined {
  if (!Array.isArray(names) || names.length === 0) return undefined;
  const last: unknown = names[names.length - 1];
  return isNode(last) && isNode(last.String) ? lower(last.String.sval) : undefined;
}

/** An identifier exactly as Postgres resolves it (already case-folded by the parser). */
function identifier(node: unknown): string | undefined {
  return isNode(node) && isNode(node.String) && typeof node.String.sval === 'string' ? node.String.sval : undefined;
}
