import { createHash } from 'node:crypto';
import { Frontend } from '../protocol/codes.js';
import { msg, SYNC } from '../protocol/messages.js';
import type { Placement } from './directory.js';

export const CLAIMS_SETTING = 'request.jwt.claims';

/**
 * A client's tenant context, applied on every checkout of a server connection: one prepared
 * `select set_config($1,$2,false), …` per set of setting names, bound with this client's values.
 * Values travel as bind parameters, never inside SQL text.
 */
export interface Binding {
  tenant: string;
  placement: Placement;
  /** Server-side name of the binding statement. */
  statementName: string;
  /** Parse of the binding statement, sent once per server connection. */
  parse: Buffer;
  /** Bind + Execute + Sync with this client's values, sent on every checkout. */
  apply: Buffer;
  /** Prepared statements are keyed by this too, so schema tenants never share a plan. */
  statementContext: string;
  /** The search_path the binding sets (schema placement). */
  searchPath?: string;
}

const quoteIdent = (s: string): string => '"' + s.replace(/"/g, '""') + '"';

export interface BindingInput {
  tenant: string;
  placement: Placement;
  /** Setting that carries the tenant id (tenancy.setting). */
  setting: string;
  claims?: Record<string, unknown>;
  /** Include statement_timeout in every binding (some tenant has a limit); 0 = none. */
  manageStatementTimeout: boolean;
  /** Include role in every binding (schema tenants have roles): theirs, or none for everyone else. */
  manageRole: boolean;
}

export function makeBinding(input: BindingInput): Binding {
  const { tenant, placement } = input;
  const values: [string, string][] = [
    [input.setting, tenant],
    [CLAIMS_SETTING, input.claims === undefined ? '' : JSON.stringify(input.claims)],
  ];
  if (placement.kind === 'schema') values.push(['search_path', quoteIdent(placement.schema!)]);
  if (input.manageRole) values.push(['role', placement.role ?? 'none']);
  if (input.manageStatementTimeout) values.push(['statement_timeout', String(placement.limits.statementTimeout ?? 0)]);

  const sql = 'select ' + values.map((_, i) => `pg_catalog.set_config($${2 * i + 1}, $${2 * i + 2}, false)`).join(', ');
  const statementName = 'pgt_bind_' + createHash('sha1').update(sql).digest('hex').slice(0, 16);
  const parse = msg(Frontend.Parse).str(statementName).str(sql).i16(0).done();

  const bind = msg(Frontend.Bind).str('').str(statementName).i16(0).i16(values.length * 2);
  for (const [name, value] of values) {
    const n = Buffer.from(name, 'utf8');
    const v = Buffer.from(value, 'utf8');
    bind.i32(n.length).bytes(n).i32(v.length).bytes(v);
  }
  bind.i16(0);
  const execute = msg(Frontend.Execute).str('').i32(0).done();
  const apply = Buffer.concat([bind.done(), execute, SYNC]);
  const searchPath = placement.kind === 'schema' ? quoteIdent(placement.schema!) : undefined;
  return { tenant, placement, statementName, parse, apply, statementContext: placement.kind === 'schema' ? placement.schema! : '', searchPath };
}
