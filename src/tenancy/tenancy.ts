import type { Config, TenancyConfig } from '../config/schema.js';
import { StatementGuard } from '../sql/guard.js';
import { makeBinding, type Binding } from './binding.js';
import { TenantDirectory, type Placement } from './directory.js';
import { resolveTenant, splitUser, tenantFromServerName, type TenantClues } from './resolver.js';

/** Everything pgtenant knows about a logged-in client's tenant. */
export interface TenantContext {
  tenant: string;
  source: keyof TenantClues;
  placement: Placement;
  binding: Binding;
  /** Null when tenancy.guard is off. */
  guard: StatementGuard | null;
  claims?: Record<string, unknown>;
}

/** What the startup packet, the TLS handshake and the password said. */
export interface LoginFacts {
  userTenant?: string;
  optionsTenant?: string;
  database: string;
  serverName?: string;
  claims?: Record<string, unknown>;
  jwtTenant?: string;
}

/** Tenancy under one configuration: directory and guards. Rebuilt on reload. */
export class Tenancy {
  private constructor(
    readonly config: TenancyConfig,
    readonly directory: TenantDirectory,
    private readonly guards: { plain: StatementGuard; schema: StatementGuard } | null,
    private readonly manageStatementTimeout: boolean,
    private readonly manageRole: boolean,
  ) {}

  /** Null when the config has no tenancy section. */
  static async create(config: Config): Promise<Tenancy | null> {
    const t = config.tenancy;
    if (t === undefined) return null;
    const directory = TenantDirectory.fromConfig(config)!;
    const guards = t.guard
      ? {
          plain: await StatementGuard.create({ tenantSetting: t.setting, protectSearchPath: false }),
          schema: await StatementGuard.create({ tenantSetting: t.setting, protectSearchPath: true }),
        }
      : null;
    const manageStatementTimeout = Object.values(t.tenants).some((e) => e.limits.statementTimeout !== undefined);
    return new Tenancy(t, directory, guards, manageStatementTimeout, t.placements.schema?.role !== undefined);
  }

  splitUser(startupUser: string, isUser: (name: string) => boolean): { user: string; tenant?: string } {
    return splitUser(startupUser, isUser, this.config.userSeparators);
  }

  /** Picks the tenant from the facts (28000 on conflict or when none), then its placement and binding. */
  contextFor(facts: LoginFacts): TenantContext {
    const clues: TenantClues = {
      user: facts.userTenant,
      options: facts.optionsTenant,
      jwt: facts.jwtTenant,
      sni: tenantFromServerName(facts.serverName, this.config.sniSuffix),
      database: this.config.databases[facts.database],
    };
    const { tenant, source } = resolveTenant(this.config, clues);
    return { ...this.placeTenant(tenant, facts.claims), source };
  }

  /** Placement and binding of a known tenant (also used to re-place clients after a reload). */
  placeTenant(tenant: string, claims?: Record<string, unknown>): Omit<TenantContext, 'source'> {
    const placement = this.directory.placementOf(tenant);
    const binding = makeBinding({ tenant, placement, setting: this.config.setting, claims, manageStatementTimeout: this.manageStatementTimeout, manageRole: this.manageRole });
    const guard = this.guards === null ? null : placement.kind === 'schema' ? this.guards.schema : this.guards.plain;
    return { tenant, placement, binding, guard, claims };
  }
}
