import path from 'node:path';

/**
 * Rotated files are `<file>.1`, `<file>.2`, … in chain order (the number grows with each
 * rotation and nothing is renamed twice), and `<file>` itself holds the newest records.
 */
export function rotatedName(file: string, n: number): string {
  return `${file}.${n}`;
}

/** The rotation numbers of `file` found among the names in its directory, ascending. */
export function rotationNumbers(file: string, dirEntries: readonly string[]): number[] {
  const prefix = path.basename(file) + '.';
  return dirEntries
    .filter((name) => name.startsWith(prefix) && /^[1-9][0-9]*$/.test(name.slice(prefix.length)))
    .map((name) => Number(name.slice(prefix.length)))
    .sort((a, b) => a - b);
}

/** `file` preceded by its rotated siblings: the whole chain, oldest first. */
export function chainFiles(file: string, dirEntries: readonly string[]): string[] {
  return [...rotationNumbers(file, dirEntries).map((n) => rotatedName(file, n)), file];
}
