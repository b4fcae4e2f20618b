/**
 * Cheap text checks, no parsing.
 *
 * needsParser() must never say "no" for text Postgres could run as a
 * dangerous statement; "yes" only costs one parse (then the verdict is cached).
 * It searches the raw text, strings and comments included, so it over-matches
 * by design. Why it cannot be fooled:
 * - Keywords and identifiers are ASCII-case-insensitive (the regexes use /i)
 *   and cannot be split by comments or quotes; only Unicode escapes (U&"…",
 *   U&'…') and backslash escapes (E'…') can spell a letter without writing
 *   it, so any `u&` or backslash goes to the parser.
 * - Every dangerous construct needs one of: SET or RESET (statements, ALTER
 *   ROLE/DATABASE/SYSTEM/FUNCTION … SET, function SET clauses), DISCARD,
 *   set_config, pg_settings (its update rule calls set_config). SET alone is
 *   common (UPDATE … SET), so it only counts together with a hint of a
 *   protected name (SettingPolicy.nameHints).
 * - Code bodies (DO, CREATE FUNCTION/PROCEDURE) always go to the parser, so
 *   their PL/pgSQL can be checked statement by statement, including constant
 *   dynamic SQL such as EXECUTE 'se' || 't role x'.
 * Word edges follow Postgres identifiers ([A-Za-z_\x80-] then [A-Za-z0-9_$\x80-]).
 * A digit or `$` before a word still counts as an edge: servers before PG 15
 * lexed `1set` as `1` `set`.
 */
import type { SettingPolicy } from './policy.js';

const BEFORE = '(?<![a-z_\\u0080-\\uffff])';
const AFTER = '(?![a-z0-9_$\\u0080-\\uffff])';
const word = (w: string): string => `${BEFORE}(?:${w})${AFTER}`;

// DO <string>: the string is '…', E'…', $tag$…$tag$ (U&'…' is caught by `u&`),
// possibly after a comment or LANGUAGE x. `ON CONFLICT DO NOTHING|UPDATE` does
// not match: a letter follows. `DO$$` is one identifier for Postgres.
const DO_BLOCK = `${BEFORE}do(?:\\s*[^a-z0-9_$\\s\\u0080-\\uffff]|\\s+(?:\\$|e'|language${AFTER}))`;

const ALWAYS = new RegExp(
  ['\\\\', 'u&', 'set_config', 'pg_settings', word('reset|discard|function|procedure'), DO_BLOCK].join('|'),
  'i',
);
const SET_WORD = new RegExp(word('set'), 'i');
const RESET_WORD = new RegExp(word('reset'), 'i');
const DISCARD_WORD = new RegExp(word('discard'), 'i');
const ALL_WORD = new RegExp(word('all'), 'i');

// Every pattern above contains one of these: a plain case-insensitive scan
// that rejects most statements about twice as fast as the patterns themselves.
const CANDIDATE = /set|do|discard|function|procedure|u&|\\/i;

export function needsParser(sql: string, policy: SettingPolicy): boolean {
  if (!CANDIDATE.test(sql)) return false;
  return ALWAYS.test(sql) || (SET_WORD.test(sql) && policy.nameHints.test(sql));
}

/**
 * Text heuristic for code the guard cannot analyse exactly: bodies in other
 * languages, PL/pgSQL the parser rejects, and PL/pgSQL that runs dynamic SQL
 * built at run time. Returns what the text mentions, or null.
 */
export function mentionsContextChange(text: string, policy: SettingPolicy): string | null {
  if (/set_config/i.test(text)) return 'mentions set_config';
  if (/pg_settings/i.test(text)) return 'mentions pg_settings';
  if (/u&/i.test(text)) return 'uses Unicode escapes';
  const namesProtected = policy.nameHints.test(text);
  if (RESET_WORD.test(text) && (namesProtected || ALL_WORD.test(text))) return 'mentions RESET of a protected setting';
  if (SET_WORD.test(text) && namesProtected) return 'mentions SET of a protected setting';
  if (DISCARD_WORD.test(text) && ALL_WORD.test(text)) return 'mentions DISCARD ALL';
  return null;
}

/** For plain expressions: the only ways they can change a setting. */
export function expressionMentionsSetConfig(text: string): string | null {
  if (/set_config/i.test(text)) return 'mentions set_config';
  if (/pg_settings/i.test(text)) return 'mentions pg_settings';
  if (/u&/i.test(text)) return 'uses Unicode escapes';
  return null;
}
