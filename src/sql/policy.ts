/**
 * Which session settings a tenant's statements may not touch, and the
 * textual hints that let the pre-filter skip the parser.
 */

export interface GuardOptions {
  /** The setting RLS policies read, e.g. `app.tenant_id` (custom GUC names are case-insensitive). */
  tenantSetting: string;
  /** True for schema placement, where `search_path` is the tenant binding. */
  protectSearchPath: boolean;
  /** Verdicts kept in the LRU cache; default 10 000. */
  cacheSize?: number;
}

/**
 * Settings that change how Postgres *reads* later statement text. The guard's
 * parser assumes `standard_conforming_strings = on` and a UTF-8 client: with
 * the first off (`'\''` then ends a string) or a client encoding such as SJIS
 * or GBK (0x5C can be the second byte of a character), the same bytes split
 * into different tokens for Postgres than for the guard, and a dangerous
 * statement could hide inside what the guard sees as a string literal.
 */
const PINNED = new Map<string, { accepts: (value: string) => boolean; rule: string }>([
  ['standard_conforming_strings', {
    accepts: (v) => ['on', 'true', 'yes', '1'].includes(v.toLowerCase()),
    rule: 'standard_conforming_strings must stay on',
  }],
  ['client_encoding', {
    // Postgres ignores case and non-alphanumerics in encoding names ('UTF-8').
    accepts: (v) => ['utf8', 'unicode'].includes(v.toLowerCase().replace(/[^a-z0-9]/g, '')),
    rule: 'client_encoding must stay UTF8',
  }],
]);

const JWT_CLAIMS = 'request.jwt.claim'; // covers request.jwt.claims and request.jwt.claim.*

export class SettingPolicy {
  readonly tenantSetting: string;
  readonly protectSearchPath: boolean;
  /**
   * Substrings, one of which any spelling of a protected or pinned setting
   * name must contain: a name is identifiers joined by dots, so each dot-free
   * component appears contiguously in the text (quotes and comments can only
   * sit between components; only U& escapes can hide letters).
   */
  readonly nameHints: RegExp;

  constructor(opts: Pick<GuardOptions, 'tenantSetting' | 'protectSearchPath'>) {
    const tenant = opts.tenantSetting.trim().toLowerCase();
    if (tenant === '') throw new Error('tenantSetting must not be empty');
    this.tenantSetting = tenant;
    this.protectSearchPath = opts.protectSearchPath;
    const longestComponent = tenant.split('.').reduce((a, b) => (b.length > a.length ? b : a), '');
    const hints = [
      longestComponent || tenant,
      'jwt',
      'role',
      'authorization', // SET SESSION AUTHORIZATION, session_authorization
      'conforming', // standard_conforming_strings
      'encoding', // client_encoding
      'names', // SET NAMES
      ...(opts.protectSearchPath ? ['search_path', 'schema'] : []), // SET SCHEMA 'x'
    ];
    this.nameHints = new RegExp(hints.map(escapeRegExp).join('|'), 'i');
  }

  /** `name` must already be lower-case. */
  isProtected(name: string): boolean {
    return name === this.tenantSetting
      || name.startsWith(JWT_CLAIMS)
      || name === 'role'
      || name === 'session_authorization'
      || (this.protectSearchPath && name === 'search_path');
  }

  /**
   * For a pinned setting (see PINNED), why setting it to `value` is refused;
   * null when the name is not pinned or the value is safe. `undefined` means
   * the value is not a constant.
   */
  pinnedViolation(name: string, value: string | undefined): string | null {
    const pin = PINNED.get(name);
    if (pin === undefined || (value !== undefined && pin.accepts(value))) return null;
    return pin.rule;
  }
}

function escapeRegExp(s: string): string {
  return s.replace(/[.*+?^${}()|[\]\\]/g, '\\$&');
}
