import { StartupCode } from '../protocol/codes.js';
import { PgError, SqlState } from '../protocol/sqlstate.js';

export type StartupPacket =
  | { kind: 'ssl' }
  | { kind: 'gss' }
  | { kind: 'cancel'; pid: number; secret: number }
  | { kind: 'startup'; minor: number; params: Map<string, string>; protocolOptions: string[] };

/** Postgres refuses startup packets longer than this too. */
export const MAX_STARTUP_PACKET = 10_000;

/** What the startup phase's packets ask for. After `ssl`, `cancel` or `startup` no more packets are read. */
export interface StartupHandler {
  ssl(): void;
  gss(): void;
  cancel(pid: number, secret: number): void;
  /** `rest`: the bytes after the StartupMessage, the first typed messages. */
  startup(packet: Extract<StartupPacket, { kind: 'startup' }>, rest: Buffer): void;
}

/**
 * Reads the untyped startup-phase packets in `buf` (which may hold several, or end in part of
 * one), each whole one to `handler`. Returns the bytes of a packet still incomplete, to be read
 * again with the next chunk in front (null: none).
 */
export function readStartupPackets(buf: Buffer, handler: StartupHandler): Buffer | null {
  while (buf.length >= 4) {
    const len = buf.readInt32BE(0);
    if (len < 8 || len > MAX_STARTUP_PACKET) throw new PgError(SqlState.ProtocolViolation, 'invalid length of startup packet', 'FATAL');
    if (buf.length < len) break;
    const packet = parseStartupPacket(buf.subarray(0, len));
    buf = buf.subarray(len);
    switch (packet.kind) {
      case 'ssl':
        // What follows must be the TLS handshake, which a plain read here would swallow.
        if (buf.length > 0) throw new PgError(SqlState.ProtocolViolation, 'received unencrypted data after SSL request', 'FATAL');
        handler.ssl();
        return null;
      case 'gss':
        handler.gss();
        break;
      case 'cancel':
        handler.cancel(packet.pid, packet.secret);
        return null;
      case 'startup':
        handler.startup(packet, buf);
        return null;
    }
  }
  return buf.length > 0 ? Buffer.from(buf) : null;
}

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
