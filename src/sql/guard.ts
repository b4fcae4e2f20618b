/**
 * Statement guard: refuses statements that would change a tenant's session
 * context on a shared server connection (design.md §5): the tenant setting,
 * request.jwt.claims / request.jwt.claim.*, role, session_authorization,
 * search_path for schema placement, RESET ALL, DISCARD ALL, set_config() on
 * those names (or on a name it cannot know), ALTER ROLE/DATABASE … SET, and
 * function SET clauses; code bodies best effort (see code.ts).
 *
 * check() is synchronous and runs per Query/Parse text:
 *   1. pre-filter (prefilter.ts): text with no risky word is allowed at once;
 *   2. LRU cache of verdicts keyed by the exact text;
 *   3. libpg-query parse and tree walk (inspect.ts), fail closed on errors.
 */
import { createHash } from 'node:crypto';
import { fingerprintSync } from 'libpg-query';
import { loadParser } from './parser.js';
import { LRUCache } from 'lru-cache';
import { Inspector } from './inspect.js';
import { SettingPolicy, type GuardOptions } from './policy.js';
import { needsParser } from './prefilter.js';

export type { GuardOptions } from './policy.js';

export interface BlockedStatement {
  /** Human-readable, e.g. 'SET of app.tenant_id is not allowed'. */
  reason: string;
  /** Stable hex id of the statement's shape (no literal values), for logs and counters. */
  fingerprint: string;
}

export interface GuardStats {
  /** Allowed by the pre-filter alone. */
  prefiltered: number;
  cacheHits: number;
  /** Texts analysed with the parser (cache misses). */
  analysed: number;
  /** Calls into libpg-query's parsers, nested code bodies included. */
  parserCalls: number;
}

const DEFAULT_CACHE_SIZE = 10_000;
// Large texts (bulk INSERTs with inline values) are checked but not cached,
// and the cache holds at most this many characters of keys.
const MAX_CACHED_TEXT = 64 * 1024;
const MAX_CACHE_CHARS = 16 * 1024 * 1024;
const ENTRY_OVERHEAD = 64;

const ALLOWED = Object.freeze({ allowed: true as const });
type Verdict = BlockedStatement | typeof ALLOWED;

export class StatementGuard {
  private readonly policy: SettingPolicy;
  private readonly inspector: Inspector;
  private readonly cache: LRUCache<string, Verdict>;
  private readonly counts = { prefiltered: 0, cacheHits: 0, analysed: 0 };

  static async create(opts: GuardOptions): Promise<StatementGuard> {
    await loadParser();
    return new StatementGuard(opts);
  }

  private constructor(opts: GuardOptions) {
    this.policy = new SettingPolicy(opts);
    this.inspector = new Inspector(this.policy);
    this.cache = new LRUCache<string, Verdict>({
      max: Math.max(1, opts.cacheSize ?? DEFAULT_CACHE_SIZE),
      maxSize: MAX_CACHE_CHARS,
      maxEntrySize: MAX_CACHED_TEXT + ENTRY_OVERHEAD,
      sizeCalculation: (_verdict, sql) => sql.length + ENTRY_OVERHEAD,
    });
  }

  /** null = allowed. */
  check(sql: string): BlockedStatement | null {
    if (!needsParser(sql, this.policy)) {
      this.counts.prefiltered++;
      return null;
    }
    const cached = this.cache.get(sql);
    if (cached !== undefined) {
      this.counts.cacheHits++;
      return cached === ALLOWED ? null : (cached as BlockedStatement);
    }
    this.counts.analysed++;
    const reason = this.analyse(sql);
    const verdict: Verdict = reason === null ? ALLOWED : { reason, fingerprint: fingerprint(sql) };
    this.cache.set(sql, verdict);
    return verdict === ALLOWED ? null : (verdict as BlockedStatement);
  }

  /** Whether check() would consult the cache or parser for this text (false = allowed outright). */
  needsParser(sql: string): boolean {
    return needsParser(sql, this.policy);
  }

  get stats(): GuardStats {
    return { ...this.counts, parserCalls: this.inspector.parserCalls };
  }

  private analyse(sql: string): string | null {
    try {
      return this.inspector.analyse(sql, 0);
    } catch (err) {
      // Fail closed: a statement the guard cannot finish checking (e.g. a
      // tree too deep for the JS stack) is refused, never waved through.
      return `statement could not be checked (${err instanceof Error ? err.name : 'error'})`;
    }
  }
}

/** libpg-query's fingerprint (ignores literal values), else a hash of a literal-free shape. */
function fingerprint(sql: string): string {
  try {
    const id = fingerprintSync(sql);
    if (/^[0-9a-f]+$/.test(id)) return id; // on some errors it returns the message instead of throwing
  } catch {
    // not parseable: use the rough shape
  }
  return roughFingerprint(sql);
}

/** sha1 of the text with literals replaced by '?', whitespace collapsed, lower-cased; 16 hex digits like libpg-query's. */
function roughFingerprint(sql: string): string {
  const shape = sql
    .replace(/\$([A-Za-z_]\w*)?\$[\s\S]*?\$\1\$/g, '?')
    .replace(/[EeUuBbXxNn]?&?'(?:[^']|'')*'?/g, '?')
    .replace(/\b\d[\d.eE+_]*/g, '?')
    .replace(/\s+/g, ' ')
    .trim()
    .toLowerCase();
  return createHash('sha1').update(shape).digest('hex').slice(0, 16);
}
