import { describe, it, expect } from 'vitest';
import { FORBIDDEN_SETTINGS, canonicalName, isClientParameter, pinReportedParameters, settingsDiff, settingsFromStartup, strayResets } from '../../../src/client/params.js';

describe('canonicalName', () => {
  it('spells reported GUCs as the server does, whatever the case', () => {
    expect(canonicalName('datestyle')).toBe('DateStyle');
    expect(canonicalName('DATESTYLE')).toBe('DateStyle');
    expect(canonicalName('DateStyle')).toBe('DateStyle');
    expect(canonicalName('timezone')).toBe('TimeZone');
    expect(canonicalName('TIMEZONE')).toBe('TimeZone');
    expect(canonicalName('intervalStyle')).toBe('IntervalStyle');
    expect(canonicalName('Client_Encoding')).toBe('client_encoding');
    expect(canonicalName('APPLICATION_NAME')).toBe('application_name');
    expect(canonicalName('Search_Path')).toBe('search_path');
    expect(canonicalName('standard_conforming_strings')).toBe('standard_conforming_strings');
  });

  it('lower-cases other names', () => {
    expect(canonicalName('Work_Mem')).toBe('work_mem');
    expect(canonicalName('MyApp.Tenant')).toBe('myapp.tenant');
    expect(canonicalName('statement_timeout')).toBe('statement_timeout');
  });
});

describe('isClientParameter / FORBIDDEN_SETTINGS', () => {
  it('tells server-owned parameters from the client’s', () => {
    for (const p of ['server_version', 'server_encoding', 'integer_datetimes', 'is_superuser', 'session_authorization', 'in_hot_standby', 'default_transaction_read_only', 'scram_iterations']) {
      expect(isClientParameter(p), p).toBe(false);
    }
    for (const p of ['application_name', 'DateStyle', 'TimeZone', 'search_path', 'client_encoding']) expect(isClientParameter(p), p).toBe(true);
  });

  it('forbids role and session_authorization', () => {
    expect([...FORBIDDEN_SETTINGS].sort()).toEqual(['role', 'session_authorization']);
  });
});

describe('settingsFromStartup', () => {
  it('drops user, database, options and replication, and server-owned parameters', () => {
    const params = new Map([
      ['user', 'alice'],
      ['database', 'db'],
      ['options', '-c a=b'],
      ['replication', 'false'],
      ['server_version', '1'],
      ['application_name', 'psql'],
      ['datestyle', 'ISO, DMY'],
      ['TimeZone', 'UTC'],
    ]);
    expect([...settingsFromStartup(params, new Map())]).toEqual([
      ['application_name', 'psql'],
      ['DateStyle', 'ISO, DMY'],
      ['TimeZone', 'UTC'],
    ]);
  });

  it('adds the options, which win over startup parameters of the same (canonical) name', () => {
    const params = new Map([
      ['user', 'alice'],
      ['DateStyle', 'ISO, MDY'],
      ['search_path', 'public'],
      ['application_name', 'app'],
    ]);
    const options = new Map([
      ['datestyle', 'German'],
      ['SEARCH_PATH', 'tenant1'],
      ['work_mem', '64MB'],
    ]);
    const s = settingsFromStartup(params, options);
    expect(Object.fromEntries(s)).toEqual({ DateStyle: 'German', search_path: 'tenant1', application_name: 'app', work_mem: '64MB' });
  });

  it('returns an empty map when there is nothing to keep', () => {
    expect(settingsFromStartup(new Map([['user', 'u']]), new Map()).size).toBe(0);
  });
});

describe('settingsDiff', () => {
  it('is empty when the server already has every wanted value', () => {
    const wanted = new Map([
      ['application_name', 'psql'],
      ['TimeZone', 'UTC'],
    ]);
    const server = new Map([
      ['application_name', 'psql'],
      ['TimeZone', 'UTC'],
      ['server_version', '18.0'],
      ['DateStyle', 'ISO, MDY'],
    ]);
    expect(settingsDiff(wanted, server)).toBe('');
    expect(settingsDiff(new Map(), server)).toBe('');
  });

  it('sets only the differing or missing values, in order', () => {
    const wanted = new Map([
      ['application_name', 'psql'],
      ['TimeZone', 'Europe/Paris'],
      ['DateStyle', 'ISO, MDY'],
      ['work_mem', '64MB'],
    ]);
    const server = new Map([
      ['application_name', 'psql'],
      ['TimeZone', 'UTC'],
      ['DateStyle', 'ISO, MDY'],
    ]);
    expect(settingsDiff(wanted, server)).toBe(`SELECT pg_catalog.set_config('TimeZone', 'Europe/Paris', false), pg_catalog.set_config('work_mem', '64MB', false)`);
  });

  it('sets an empty value when the server has a different one', () => {
    expect(settingsDiff(new Map([['application_name', '']]), new Map([['application_name', 'x']]))).toBe(`SELECT pg_catalog.set_config('application_name', '', false)`);
  });

  it('passes a list setting whole, as the server reported it', () => {
    expect(settingsDiff(new Map([['search_path', '"$user", public']]), new Map([['search_path', 'x']]))).toBe(`SELECT pg_catalog.set_config('search_path', '"$user", public', false)`);
  });

  it('doubles single quotes in names and values', () => {
    expect(settingsDiff(new Map([['application_name', "it's"]]), new Map())).toBe(`SELECT pg_catalog.set_config('application_name', 'it''s', false)`);
    expect(settingsDiff(new Map([['application_name', "'; DROP TABLE t; --"]]), new Map())).toBe(`SELECT pg_catalog.set_config('application_name', '''; DROP TABLE t; --', false)`);
    expect(settingsDiff(new Map([["my'app.x", 'v']]), new Map())).toBe(`SELECT pg_catalog.set_config('my''app.x', 'v', false)`);
  });
});

describe('strayResets', () => {
  const server = new Map([
    ['application_name', 'psql'],
    ['server_version', '15.4'],
    ['is_superuser', 'off'],
    ['statement_timeout', '100ms'],
    ['search_path', 'tenant_s1'],
  ]);

  it('resets what an earlier client set and this one never chose, never what the server owns', () => {
    expect(strayResets(new Map([['application_name', 'x']]), server, undefined)).toEqual({ names: ['statement_timeout', 'search_path'], sql: 'RESET "statement_timeout"; RESET "search_path"' });
  });

  it('leaves search_path to a tenant binding that sets it, and settings the client has to settingsDiff', () => {
    expect(strayResets(new Map([['application_name', 'x'], ['statement_timeout', '5s']]), server, 'search_path')).toBeNull();
  });

  it('quotes names whole, so a client-chosen name cannot end the statement', () => {
    expect(strayResets(new Map(), new Map([['my"app.x; DROP TABLE t', 'v']]), undefined)?.sql).toBe('RESET "my""app.x; DROP TABLE t"');
  });
});

describe('pinReportedParameters', () => {
  it('reports the server\'s parameters with the client\'s own values, and pins every reported one the client may change', () => {
    const server = new Map([['DateStyle', 'ISO, MDY'], ['TimeZone', 'UTC'], ['server_version', '18.4'], ['is_superuser', 'off']]);
    const settings = new Map([['TimeZone', 'Europe/Paris'], ['application_name', 'app'], ['work_mem', '8MB']]);
    const reported = pinReportedParameters(server, settings);
    expect([...reported]).toEqual([['DateStyle', 'ISO, MDY'], ['TimeZone', 'Europe/Paris'], ['server_version', '18.4'], ['is_superuser', 'off'], ['application_name', 'app']]);
    // work_mem is not reported (the server does not report it) but stays the client's.
    expect([...settings]).toEqual([['TimeZone', 'Europe/Paris'], ['application_name', 'app'], ['work_mem', '8MB'], ['DateStyle', 'ISO, MDY']]);
    expect(server.get('TimeZone')).toBe('UTC');
  });
});
