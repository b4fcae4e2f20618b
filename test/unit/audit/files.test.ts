import { describe, expect, it } from 'vitest';
import { chainFiles, rotatedName, rotationNumbers } from '../../../src/audit/files.js';

describe('rotated file names', () => {
  const entries = ['audit.log', 'audit.log.10', 'audit.log.2', 'audit.log.1', 'audit.log.bak', 'audit.log.01', 'audit.log.0', 'audit.logs.3', 'other.log.4'];

  it('finds the numbered siblings in numeric order, ignoring look-alikes', () => {
    expect(rotationNumbers('/var/log/audit.log', entries)).toEqual([1, 2, 10]);
    expect(rotationNumbers('audit.log', [])).toEqual([]);
  });

  it('lists the whole chain oldest first, the current file last', () => {
    expect(chainFiles('/var/log/audit.log', entries)).toEqual(['/var/log/audit.log.1', '/var/log/audit.log.2', '/var/log/audit.log.10', '/var/log/audit.log']);
    expect(chainFiles('audit.log', ['audit.log'])).toEqual(['audit.log']);
    expect(rotatedName('/var/log/audit.log', 3)).toBe('/var/log/audit.log.3');
  });
});
