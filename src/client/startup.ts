import { StartupCode } from '../protocol/codes.js';
import { PgError, SqlState } from '../protocol/sqlstate.js';

export type StartupPacket =
  | { kind: 'ssl' }
  | { kind: 'gss' }
  | { kind: 'cancel'; pid: number; secret: number }
  | { kind: 'startup'; minor: number; params: Map<string, string>; protocolOptions: string[] };

/** Postgres refuses startup packets longer than this too. */
export const MAX_STARTUP_PACKET = 10_000;

/** Parses one untyped startup-phase packet (length included). Throws PgError for what Postgres would refuse. */
export function parseStartupPacket(packet: Buffer): StartupPacket {
  if (packet.length < 8) throw new PgError(SqlState.ProtocolViolation, 'invalid startup packet length', 'FATAL');
  const code = packet.readInt32BE(4);
  switch (code) {
    case StartupCode.SSLRequest:
      return { kind: 'ssl' };
    case StartupCode.GSSENCRequest:
      return { kind: 'gss' };
    case StartupCode.CancelRequest:
      if (packet.length < 16) throw new PgError(SqlState.ProtocolViolation, 'invalid cancel request', 'FATAL');
      return { kind: 'cancel', pid: packet.readInt32BE(8), secret: packet.readInt32BE(12) };
  }
  const major = code >>> 16;
  if (major !== 3) throw new PgError(SqlState.FeatureNotSupported, `unsupported frontend protocol ${major}.${code & 0xffff}: server supports 3.0 to 3.0`, 'FATAL');
  const params = new Map<string, string>();
  const protocolOptions: string[] = [];
  let o = 8;
  while (o < packet.length && packet[o] !== 0) {
    const keyEnd = packet.indexOf(0, o);
    const valEnd = keyEnd === -1 ? -1 : packet.indexOf(0, keyEnd + 1);
    if (keyEnd === -1 || valEnd === -1) throw new PgError(SqlState.ProtocolViolation, 'invalid startup packet layout: expected terminator as last byte', 'FATAL');
    const key = packet.toString('utf8', o, keyEnd);
    const value = packet.toString('utf8', keyEnd + 1, valEnd);
    if (key.startsWith('_pq_.')) protocolOptions.push(key);
    else params.set(key, value);
    o = valEnd + 1;
  }
  if (o !== packet.length - 1) throw new PgError(SqlState.ProtocolViolation, 'invalid startup packet layout: expected terminator as last byte', 'FATAL');
  return { kind: 'startup', minor: code & 0xffff, params, protocolOptions };
}

/**
 * Splits a startup `options` string into settings: `-c name=value`, `-cname=value` and
 * `--name=value`, with backslash escaping spaces as libpq does.
 */
export function parseOptions(options: string): Map<string, string> {
  const words: string[] = [];
  let word = '';
  let inWord = false;
  for (let i = 0; i < options.length; i++) {
    const ch = options[i];
    if (ch === '\\' && i + 1 < options.length) {
      word += options[++i];
      inWord = true;
    } else if (ch === ' ' || ch === '\t') {
      if (inWord) words.push(word);
      word = '';
      inWord = false;
    } else {
      word += ch;
      inWord = true;
    }
  }
  if (inWord) words.push(word);

  const settings = new Map<string, string>();
  const add = (assignment: string): void => {
    const eq = assignment.indexOf('=');
    if (eq <= 0) throw new PgError(SqlState.ProtocolViolation, `invalid option "${assignment}" in startup options: expected name=value`, 'FATAL');
    settings.set(assignment.slice(0, eq).replace(/-/g, '_'), assignment.slice(eq + 1));
  };
  for (let i = 0; i < words.length; i++) {
    const w = words[i];
    if (w === '-c') {
      if (i + 1 >= words.length) throw new PgError(SqlState.ProtocolViolation, 'startup option -c needs name=value', 'FATAL');
      add(words[++i]);
    } else if (w.startsWith('-c')) add(w.slice(2));
    else if (w.startsWith('--')) add(w.slice(2));
    else throw new PgError(SqlState.ProtocolViolation, `unsupported startup option "${w}": only -c name=value is supported`, 'FATAL');
  }
  return settings;
}
