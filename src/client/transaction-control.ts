/**
 * Plain transaction control in a simple Query, recognised from its text without the parser:
 * `BEGIN`, `START TRANSACTION`, `COMMIT`/`END`, `ROLLBACK`/`ABORT` (each with optional WORK or
 * TRANSACTION and a trailing semicolon). Anything more (isolation level, READ ONLY, AND CHAIN,
 * PREPARED, comments, a second statement) is not plain and goes to the server as it is.
 */
const PLAIN = /^\s*(?:(begin|start)(?:\s+(?:work|transaction))?|(commit|end|rollback|abort)(?:\s+(?:work|transaction))?)\s*;?\s*$/i;

/** Longest plain form with room for whitespace: longer texts are not looked at. */
const MAX_LENGTH = 64;

/** The only first word each first letter can start here. */
const FIRST_WORDS: Record<number, Buffer> = Object.fromEntries(['begin', 'start', 'commit', 'end', 'rollback', 'abort'].map((w) => [w.charCodeAt(0), Buffer.from(w)]));

export type TransactionControl = 'begin' | 'commit' | 'rollback';

/** What a Query message (type byte at `start`) does, when it is plain transaction control. */
export function transactionControl(buf: Buffer, start: number, end: number): TransactionControl | null {
  const textStart = start + 5;
  const textEnd = end - 1;
  if (textEnd - textStart > MAX_LENGTH || textEnd <= textStart) return null;
  // The first word must be one of the six, compared on the bytes: most statements stop here.
  let i = textStart;
  while (i < textEnd && (buf[i] === 0x20 || buf[i] === 0x0a || buf[i] === 0x09 || buf[i] === 0x0d)) i++;
  const word = FIRST_WORDS[buf[i] | 0x20];
  if (word === undefined || i + word.length > textEnd) return null;
  for (let k = 1; k < word.length; k++) if ((buf[i + k] | 0x20) !== word[k]) return null;
  const m = PLAIN.exec(buf.toString('latin1', textStart, textEnd));
  if (m === null) return null;
  const matched = (m[1] ?? m[2]).toLowerCase();
  if (matched === 'start') return m[0].toLowerCase().includes('transaction') ? 'begin' : null;
  if (matched === 'begin') return 'begin';
  return matched === 'commit' || matched === 'end' ? 'commit' : 'rollback';
}
