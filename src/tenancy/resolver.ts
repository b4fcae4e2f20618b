import { PgError, SqlState } from '../protocol/sqlstate.js';
import type { TenancyConfig } from '../config/schema.js';

/** The startup option that names a tenant: `-c pgtenant.tenant=acme`. */
export const TENANT_OPTION = 'pgtenant.tenant';

/** What each source says about the tenant, before the order and conflicts are applied. */
export interface TenantClues {
  /** From `user@tenant` / `user.tenant`. */
  user?: string;
  options?: string;
  jwt?: string;
  sni?: string;
  database?: string;
}

const SOURCE_NAMES: Record<keyof TenantClues, string> = {
  user: 'the user name',
  options: `the ${TENANT_OPTION} option`,
  jwt: 'the JWT',
  sni: 'the TLS server name',
  database: 'the database name',
};

/**
 * Splits `app@acme` into user `app` and tenant `acme`. A name that is itself a configured user is
 * never split, so users with dots in their names keep working.
 */
export function splitUser(startupUser: string, isUser: (name: string) => boolean, separators: string[]): { user: string; tenant?: string } {
  if (isUser(startupUser)) return { user: startupUser };
  for (const sep of separators) {
    const at = startupUser.lastIndexOf(sep);
    if (at > 0 && at < startupUser.length - 1) {
      const user = startupUser.slice(0, at);
      if (isUser(user)) return { user, tenant: startupUser.slice(at + 1) };
    }
  }
  return { user: startupUser };
}

/** `acme.db.example.com` → `acme` (with sniSuffix `db.example.com`, or the first label of a 3+ label name). */
export function tenantFromServerName(name: string | undefined, sniSuffix: string | undefined): string | undefined {
  if (!name) return undefined;
  if (sniSuffix !== undefined) {
    const suffix = '.' + sniSuffix.replace(/^\./, '');
    return name.endsWith(suffix) && name.length > suffix.length ? name.slice(0, -suffix.length) : undefined;
  }
  const labels = name.split('.');
  return labels.length >= 3 ? labels[0] : undefined;
}

/** First source in `tenancy.resolve` order wins; another source naming a different tenant is an error. */
export function resolveTenant(tenancy: TenancyConfig, clues: TenantClues): { tenant: string; source: keyof TenantClues } {
  let chosen: { tenant: string; source: keyof TenantClues } | undefined;
  for (const source of tenancy.resolve) {
    const tenant = clues[source];
    if (tenant === undefined || tenant === '') continue;
    if (chosen === undefined) chosen = { tenant, source };
    else if (chosen.tenant !== tenant) {
      throw new PgError(SqlState.InvalidAuthorizationSpecification, `tenant sources disagree: ${SOURCE_NAMES[chosen.source]} says "${chosen.tenant}", ${SOURCE_NAMES[source]} says "${tenant}"`, 'FATAL');
    }
  }
  if (chosen === undefined) {
    throw new PgError(SqlState.InvalidAuthorizationSpecification, 'no tenant given', 'FATAL', undefined, `connect as user@tenant, pass -c ${TENANT_OPTION}=<tenant> in options, or log in with a JWT that has the tenant claim (sources tried: ${tenancy.resolve.join(', ')})`);
  }
  return chosen;
}
