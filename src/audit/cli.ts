import { readdirSync } from 'node:fs';
import path from 'node:path';
import { chainFiles } from './files.js';
import { verifyAuditFiles } from './verify.js';

export const AUDIT_USAGE = `usage: pgtenant audit verify FILE... [--key KEY] [--every N]
  FILE...  the chain's files, oldest first; a single FILE also brings in its rotated
           siblings FILE.1, FILE.2, … (older) ahead of it
  --key    checks checkpoint HMACs (or $PGTENANT_AUDIT_KEY, which keeps the key out of ps),
           and that checkpoints are there
  --every  audit.checkpointEvery the log was written with (default 1000)
exit status: 0 intact, 1 broken, 2 usage error or unreadable file
`;

/** `pgtenant audit …`: prints the verdict and returns the exit status. */
export function auditCommand(args: string[], key: string | undefined, every?: string): number {
  const [sub, ...files] = args;
  const checkpointEvery = every === undefined ? 1000 : Number(every);
  if (sub !== 'verify' || files.length === 0 || !Number.isSafeInteger(checkpointEvery) || checkpointEvery < 1) {
    process.stderr.write(AUDIT_USAGE);
    return 2;
  }
  try {
    const chain = files.length === 1 ? chainFiles(files[0], readdirSync(path.dirname(files[0]))) : files;
    const result = verifyAuditFiles(chain, key ?? process.env.PGTENANT_AUDIT_KEY, checkpointEvery);
    if (result.ok) {
      process.stdout.write(`ok: ${result.records} records\n`);
      return 0;
    }
    process.stdout.write(`broken at ${result.file}:${result.line} (seq ${result.seq ?? '?'}): ${result.reason}\n`);
    return 1;
  } catch (err) {
    process.stderr.write(`pgtenant audit: ${(err as Error).message}\n`);
    return 2;
  }
}
