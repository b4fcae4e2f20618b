/**
 * Plain transaction control in a simple Query, recognised from its text without the parser:
 * `BEGIN`, `START TRANSACTION`, `COMMIT`/`END`, `ROLLBACK`/`ABORT` (each with optional WORK or
 * TRANSACTION and a trailing semicolon). Anything more (isolation level, READ ONLY, AND CHAIN,
 * PREPARED, comments, a second statement) is not plain and goes to the server as it is.
 */
const PLAIN = /^\s*(?:(begin|start)(?:\s+(?:work|transaction))?|(commit|end|rollback|abort)(?:\s+(?:work|transaction))?)\s*;?\s*$/i;

/** Longest plain form with room for whitespace: longer texts are not looked at. */
const MAX_LENGTH = 64;

export type TransactionControl = 'begin' | 'commit' | 'rollback';

/** What a Query message (type byte at `start`) does, when it is plain transaction control. */
export function transactionControl(buf: Buffer, start: number, end: number): TransactionControl | null {
  const textStart = start + 5;
  const textEnd = end - 1;
  if (textEnd - textStart > MAX_LENGTH || textEnd <= textStart) return null;
  // The first non-blank letter must start one of the words: most statements stop here.
  let i = textStart;
  while (i < textEnd && (buf[i] === 0x20 || buf[i] === 0x0a || buf[i] === 0x09 || buf[i] === 0x0d)) i++;
  const first = buf[i] | 0x20;
  if (first !== 0x62 /* b */ && first !== 0x73 /* s */ && first !== 0x63 /* c */ && first !== 0x65 /* e */ && first !== 0x72 /* r */ && first !== 0x61 /* a */) return null;
  const m = PLAIN.exec(buf.toString('latin1', textStart, textEnd));
  if (m === null) return null;
  const word = (m[1] ?? m[2]).toLowerCase();
  if (word === 'start') return m[0].toLowerCase().includes('transaction') ? 'begin' : null;
  if (word === 'begin') return 'begin';
  return word === 'commit' || word === 'end' ? 'commit' : 'rollback';
}
