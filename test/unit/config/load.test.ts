import { mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { formatIssues, loadConfigFile, parseConfig, type ConfigIssue } from '../../../src/config/load.js';

/** Joins lines so each test's line numbers can be read off the array index (+1). */
const yaml = (...lines: string[]) => `${lines.join('\n')}\n`;

function issuesOf(text: string, env: NodeJS.ProcessEnv = {}): ConfigIssue[] {
  const result = parseConfig(text, 'pgtenant.yaml', env);
  if (result.ok) throw new Error('expected the config to be rejected');
  return result.issues;
}

const brief = (issues: ConfigIssue[]) => issues.map(({ line, column, path, message }) => ({ line, column, path, message }));

describe('parseConfig', () => {
  it('accepts a valid config and fills defaults', () => {
    const result = parseConfig(yaml(
      'backends:',
      '  main:',
      '    host: db.internal',
      '    connectTimeout: 5s',
      'pool:',
      '  idleTimeout: 2m',
    ), 'pgtenant.yaml', {});
    expect(result.ok).toBe(true);
    if (!result.ok) return;
    expect(result.config.backends.main).toEqual({
      host: 'db.internal', port: 5432, tls: { mode: 'disable' }, connectTimeout: 5000, replicas: [],
      readRouting: { healthInterval: 2000, maxLagBytes: 16 * 1024 * 1024, maxLagTime: 30_000, ejection: { minRequests: 10, failurePercent: 50, baseTime: 30_000, maxTime: 300_000, maxPercent: 50 } },
    });
    expect(result.config.pool).toMatchObject({ mode: 'transaction', size: 20, queueTimeout: 5000, idleTimeout: 120_000 });
    expect(result.config.listen).toEqual({ host: '127.0.0.1', port: 6432, allowCleartextWithoutTls: false, maxClients: 10_000 });
    expect(result.config.log.level).toBe('info');
  });

  it('reports a YAML syntax error at its line', () => {
    const issues = issuesOf(yaml(
      'listen:',
      '  port: 6432',
      ' backends:',
      '  main: x',
    ));
    expect(brief(issues)).toEqual([
      { line: 3, column: 1, path: '', message: 'All mapping items must start at the same column' },
    ]);
  });

  it('reports a duplicate key at the second occurrence', () => {
    const issues = issuesOf(yaml(
      'backends:',
      '  main:',
      '    host: a',
      '    host: b',
    ));
    expect(brief(issues)).toEqual([
      { line: 4, column: 5, path: 'backends.main.host', message: 'duplicate key "host"; a key may appear only once in a mapping' },
    ]);
  });

  it('points an unknown key at the key itself and lists the allowed keys', () => {
    const issues = issuesOf(yaml(
      'listen:',
      '  port: 6432',
      '  prot: 1',
      'backends:',
      '  main:',
      '    host: db',
    ));
    expect(brief(issues)).toEqual([{
      line: 3, column: 3, path: 'listen.prot',
      message: 'unknown key "prot"; allowed keys: host, port, tls, allowCleartextWithoutTls, maxClients',
    }]);
  });

  it('reports a wrong type at the value', () => {
    const issues = issuesOf(yaml(
      'backends:',
      '  main:',
      '    host: db',
      '    port: "abc"',
    ));
    expect(brief(issues)).toEqual([
      { line: 4, column: 11, path: 'backends.main.port', message: 'expected a number, got "abc"' },
    ]);
  });

  it('reports a missing required key at the parent mapping', () => {
    const issues = issuesOf(yaml('listen:', '  port: 6432'));
    expect(brief(issues)).toEqual([{ line: 1, column: 1, path: '', message: 'missing required key "backends"' }]);
  });

  it('reports an empty file and a non-mapping file as one issue', () => {
    expect(brief(issuesOf('# nothing here\n'))).toEqual([
      { line: 1, column: 1, path: '', message: 'the file is empty; it needs at least a "backends" section' },
    ]);
    const [issue, ...rest] = issuesOf(yaml('- a', '- b'));
    expect(rest).toEqual([]);
    expect(issue).toMatchObject({ line: 1, column: 1 });
    expect(issue.message).toMatch(/^expected a mapping of settings \(listen, admin, backends.*\) at the top level, got a list$/);
  });

  describe('environment substitution', () => {
    const text = yaml(
      'listen:',
      '  host: ${LISTEN_HOST:-0.0.0.0}',
      '  port: ${PG_PORT}',
      'backends:',
      '  main:',
      '    host: ${PG_HOST}',
      '    user: "${PG_USER}"',
      '    password: pre-${PG_PASSWORD}-post',
      '    tls:',
      '      mode: ${TLS_MODE:-disable}',
      '    connectTimeout: ${TIMEOUT}',
    );

    it('substitutes variables, applies defaults and coerces whole-value numbers', () => {
      const result = parseConfig(text, 'pgtenant.yaml', {
        PG_PORT: '7000', PG_HOST: 'db', PG_USER: '1234', PG_PASSWORD: 'secret', TLS_MODE: '', TIMEOUT: '2s',
      });
      expect(result.ok).toBe(true);
      if (!result.ok) return;
      expect(result.config.listen).toMatchObject({ host: '0.0.0.0', port: 7000 });
      // Quoted, so the digits stay text; `:-` also applies to an empty variable.
      expect(result.config.backends.main).toMatchObject({
        host: 'db', user: '1234', password: 'pre-secret-post', tls: { mode: 'disable' }, connectTimeout: 2000,
      });
    });

    it('reports each missing variable at its scalar', () => {
      const issues = issuesOf(text, { PG_PORT: '7000', PG_PASSWORD: 'x', TIMEOUT: '1s' });
      expect(brief(issues)).toEqual([
        { line: 6, column: 11, path: 'backends.main.host', message: 'environment variable PG_HOST is not set; set it or write ${PG_HOST:-default}' },
        { line: 7, column: 11, path: 'backends.main.user', message: 'environment variable PG_USER is not set; set it or write ${PG_USER:-default}' },
      ]);
    });

    it('validates the substituted value at the position of the reference', () => {
      const issues = issuesOf(yaml(
        'backends:',
        '  main:',
        '    host: db',
        '    port: ${PG_PORT}',
        '    password: ${PG_PASSWORD}',
      ), { PG_PORT: 'abc', PG_PASSWORD: '1234' });
      expect(brief(issues)).toEqual([
        { line: 4, column: 11, path: 'backends.main.port', message: 'expected a number, got "abc"' },
        { line: 5, column: 15, path: 'backends.main.password', message: 'expected a string, got 1234; quote the value to use it as text' },
      ]);
    });

    it('rejects a malformed reference', () => {
      const issues = issuesOf(yaml('backends:', '  main:', '    host: ${PG-HOST}'));
      expect(brief(issues)).toEqual([
        { line: 3, column: 11, path: 'backends.main.host', message: 'malformed environment reference; write ${NAME} or ${NAME:-default}' },
      ]);
    });
  });

  describe('backend union', () => {
    it('reports the remote-backend branch for a wrong host type', () => {
      expect(brief(issuesOf('backends: { main: { host: 1 } }\n'))).toEqual([
        { line: 1, column: 27, path: 'backends.main.host', message: 'expected a string, got 1; quote the value to use it as text' },
      ]);
    });

    it('reports the embedded branch when the entry has an embedded key', () => {
      const issues = issuesOf(yaml(
        'backends:',
        '  main:',
        '    embedded:',
        '      port: x',
        '      dataDir: 1',
      ));
      expect(brief(issues)).toEqual([
        { line: 4, column: 13, path: 'backends.main.embedded.port', message: 'expected a number, got "x"' },
        { line: 5, column: 16, path: 'backends.main.embedded.dataDir', message: 'expected a string, got 1; quote the value to use it as text' },
      ]);
    });

    it('reports a typo in a remote backend as an unknown key plus the missing one', () => {
      const issues = issuesOf(yaml('backends:', '  main:', '    hst: db'));
      expect(brief(issues)).toEqual([
        { line: 2, column: 3, path: 'backends.main', message: 'missing required key "host"' },
        { line: 3, column: 5, path: 'backends.main.hst', message: 'unknown key "hst"; allowed keys: host, port, user, password, tls, connectTimeout, replicas, readRouting' },
      ]);
    });

    it('reports a replica listed twice', () => {
      const issues = issuesOf(yaml('backends:', '  main:', '    host: db', '    replicas:', '      - host: r1', '      - host: r1', '        port: 5432'));
      expect(brief(issues)).toEqual([
        { line: 4, column: 5, path: 'backends.main.replicas', message: 'replica "r1:5432" is listed twice; give each replica its own name' },
      ]);
    });

    it('merges branch type errors instead of saying "Invalid input"', () => {
      const issues = issuesOf(yaml('backends:', '  main:', '    host: db', '    connectTimeout: true'));
      expect(brief(issues)).toEqual([
        { line: 4, column: 21, path: 'backends.main.connectTimeout', message: 'expected a number or a string, got true' },
      ]);
    });
  });

  it('reports several errors at once, in file order', () => {
    const issues = issuesOf(yaml(
      'listen:',
      '  port: 70000',
      'pool:',
      '  size: 1.5',
      '  mode: fast',
      '  queueTimeout: 5 sec',
      'backends:',
      '  main:',
      '    host: db',
      '    tls: { mode: bad }',
    ));
    expect(brief(issues)).toEqual([
      { line: 2, column: 9, path: 'listen.port', message: 'must be at most 65535, got 70000' },
      { line: 4, column: 9, path: 'pool.size', message: 'expected an integer, got 1.5' },
      { line: 5, column: 9, path: 'pool.mode', message: 'expected one of session, transaction, got "fast"' },
      { line: 6, column: 17, path: 'pool.queueTimeout', message: 'expected a duration like 250ms, 5s, 2m or 1h' },
      { line: 10, column: 18, path: 'backends.main.tls.mode', message: 'expected one of disable, prefer, require, verify-full, got "bad"' },
    ]);
  });
});

describe('loadConfigFile', () => {
  it('reads and parses a file', () => {
    const file = join(mkdtempSync(join(tmpdir(), 'pgtenant-cfg-')), 'pgtenant.yaml');
    writeFileSync(file, yaml('backends:', '  main:', '    host: db'));
    const result = loadConfigFile(file, {});
    expect(result.ok && result.config.backends.main).toMatchObject({ host: 'db', port: 5432 });
  });

  it('reports an unreadable file at line 1 with the OS error', () => {
    const result = loadConfigFile('/nonexistent/pgtenant.yaml', {});
    expect(result).toEqual({
      ok: false,
      issues: [{ file: '/nonexistent/pgtenant.yaml', line: 1, column: 1, path: '', message: expect.stringContaining('ENOENT') }],
    });
  });
});

describe('formatIssues', () => {
  it('prints one file:line:column: path: message line per issue', () => {
    expect(formatIssues([
      { file: 'a.yaml', line: 3, column: 5, path: 'backends.main.hst', message: 'unknown key "hst"' },
      { file: 'a.yaml', line: 1, column: 1, path: '', message: 'the file is empty' },
    ])).toBe('a.yaml:3:5: backends.main.hst: unknown key "hst"\na.yaml:1:1: the file is empty');
  });
});
