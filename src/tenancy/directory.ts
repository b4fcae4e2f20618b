import { PgError, SqlState } from '../protocol/sqlstate.js';
import type { Config, PlacementKind, TenancyConfig, TenantLimits } from '../config/schema.js';

/** Where a tenant's data lives and what it may use. */
export interface Placement {
  kind: PlacementKind;
  backend: string;
  database: string;
  /** Schema placement only. */
  schema?: string;
  /** Schema placement with a tenant role only. */
  role?: string;
  limits: TenantLimits;
}

/** Tenant ids become parts of schema and database names: keep them plain. */
const TENANT_ID = /^[A-Za-z0-9_-]{1,63}$/;

function globToRegExp(glob: string): RegExp {
  const body = glob.replace(/[.+^${}()|[\]\\]/g, '\\$&').replace(/\*/g, '.*').replace(/\?/g, '.');
  return new RegExp(`^${body}$`);
}

/** Tenant entries and glob patterns over a default placement. */
export class TenantDirectory {
  private readonly patterns: { re: RegExp; key: string }[];

  constructor(
    private readonly tenancy: TenancyConfig,
    private readonly defaultBackend: string,
  ) {
    this.patterns = Object.keys(tenancy.tenants)
      .filter((k) => /[*?]/.test(k))
      .map((key) => ({ re: globToRegExp(key), key }));
  }

  static fromConfig(config: Config): TenantDirectory | null {
    if (config.tenancy === undefined) return null;
    return new TenantDirectory(config.tenancy, config.route.backend ?? Object.keys(config.backends)[0]);
  }

  /** The placement of `tenant`, or a 28000 error when it is unknown and unknown tenants are rejected. */
  placementOf(tenant: string): Placement {
    if (!TENANT_ID.test(tenant)) {
      throw new PgError(SqlState.InvalidAuthorizationSpecification, `invalid tenant id "${tenant.slice(0, 80)}": use letters, digits, "_" and "-" (at most 63)`, 'FATAL');
    }
    const t = this.tenancy;
    let entry = t.tenants[tenant];
    if (entry === undefined) {
      const match = this.patterns.find((p) => p.re.test(tenant));
      if (match !== undefined) entry = t.tenants[match.key];
    }
    if (entry === undefined && t.unknown === 'reject') {
      throw new PgError(SqlState.InvalidAuthorizationSpecification, `unknown tenant "${tenant}"`, 'FATAL', undefined, 'add it under tenancy.tenants, or set tenancy.unknown: default');
    }
    const kind = entry?.placement ?? t.default;
    const limits = entry?.limits ?? {};
    const fill = (pattern: string): string => pattern.replace(/\{tenant\}/g, tenant);
    switch (kind) {
      case 'row': {
        const p = t.placements.row!;
        return { kind, backend: entry?.backend ?? p.backend ?? this.defaultBackend, database: entry?.database ?? p.database, limits };
      }
      case 'schema': {
        const p = t.placements.schema!;
        const role = p.role === undefined ? undefined : fill(p.role);
        return { kind, backend: entry?.backend ?? p.backend ?? this.defaultBackend, database: entry?.database ?? p.database, schema: fill(entry?.schema ?? p.schema), role, limits };
      }
      case 'database': {
        const p = t.placements.database!;
        return { kind, backend: entry?.backend ?? p.backend ?? this.defaultBackend, database: fill(entry?.database ?? p.database), limits };
      }
    }
  }
}
