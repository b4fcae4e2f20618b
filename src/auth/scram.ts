/**
 * SCRAM-SHA-256 (RFC 5802 / RFC 7677) as PostgreSQL speaks it: no channel binding
 * (we never offer SCRAM-SHA-256-PLUS), and the username inside the SCRAM messages
 * is ignored because Postgres authenticates the user named in the startup packet.
 *
 * Server side (clients logging in to the proxy): `ScramServerSession`.
 * Client side (the proxy logging in to a backend): `ScramClientSession`.
 */
import { createHash, createHmac, pbkdf2Sync, randomBytes, timingSafeEqual } from 'node:crypto';

export interface ScramVerifier {
  iterations: number;
  salt: Buffer;
  storedKey: Buffer;
  serverKey: Buffer;
}

export type ScramResult<K extends string> =
  | ({ ok: true } & Record<K, string>)
  | { ok: false; reason: string };

/** The SASL mechanism name to advertise and accept. */
export const SCRAM_MECHANISM = 'SCRAM-SHA-256';
const KEY_LENGTH = 32;
/** Same nonce and salt size as libpq and the Postgres server. */
const NONCE_BYTES = 18;
const SALT_BYTES = 16;

/**
 * Simplified SASLprep: real SASLprep (RFC 4013) also maps some characters to
 * nothing and prohibits others; NFKC is the part that matters for ordinary
 * passwords, and Postgres itself falls back to the raw password when SASLprep fails.
 */
function saslPrep(password: string): string {
  return password.normalize('NFKC');
}

function hmac(key: Buffer, data: string): Buffer {
  return createHmac('sha256', key).update(data).digest();
}

function sha256(data: Buffer): Buffer {
  return createHash('sha256').update(data).digest();
}

function xor(a: Buffer, b: Buffer): Buffer {
  const out = Buffer.alloc(a.length);
  for (let i = 0; i < a.length; i++) out[i] = a[i] ^ b[i];
  return out;
}

function safeEqual(a: Buffer, b: Buffer): boolean {
  return a.length === b.length && timingSafeEqual(a, b);
}

const BASE64 = /^(?:[A-Za-z0-9+/]{4})*(?:[A-Za-z0-9+/]{2}==|[A-Za-z0-9+/]{3}=)?$/;

/** Buffer.from(…, 'base64') silently skips junk; authentication input must be exact. */
function decodeBase64(text: string): Buffer | undefined {
  return BASE64.test(text) ? Buffer.from(text, 'base64') : undefined;
}

function parseIterations(text: string): number | undefined {
  if (!/^[1-9][0-9]{0,9}$/.test(text)) return undefined;
  const n = Number(text);
  return n <= 0x7fffffff ? n : undefined;
}

/** RFC 5802 `printable` minus ',' — the allowed nonce characters. */
const NONCE = /^[\x21-\x2b\x2d-\x7e]+$/;

/** Value of attribute `name` ("r" for "r=…"), or undefined when `part` is another attribute. */
function attr(part: string | undefined, name: string): string | undefined {
  return part !== undefined && part.startsWith(`${name}=`) ? part.slice(name.length + 1) : undefined;
}

/** RFC 5802 extension attributes, which Postgres (and we) ignore. */
function isExtension(part: string): boolean {
  return /^[A-Za-z]=/.test(part);
}

function saltedKeys(password: string, salt: Buffer, iterations: number): { clientKey: Buffer; serverKey: Buffer } {
  const salted = pbkdf2Sync(saslPrep(password), salt, iterations, KEY_LENGTH, 'sha256');
  return { clientKey: hmac(salted, 'Client Key'), serverKey: hmac(salted, 'Server Key') };
}

export function makeScramVerifier(password: string, salt: Buffer = randomBytes(SALT_BYTES), iterations = 4096): ScramVerifier {
  const { clientKey, serverKey } = saltedKeys(password, salt, iterations);
  return { iterations, salt, storedKey: sha256(clientKey), serverKey };
}

/** Parses what pg_authid.rolpassword holds: `SCRAM-SHA-256$<iter>:<salt>$<StoredKey>:<ServerKey>`. */
export function parseScramVerifier(text: string): ScramVerifier | undefined {
  const m = /^SCRAM-SHA-256\$([^:$]+):([^:$]+)\$([^:$]+):([^:$]+)$/.exec(text);
  if (!m) return undefined;
  const iterations = parseIterations(m[1]);
  const salt = decodeBase64(m[2]);
  const storedKey = decodeBase64(m[3]);
  const serverKey = decodeBase64(m[4]);
  if (iterations === undefined || !salt || salt.length === 0) return undefined;
  if (storedKey?.length !== KEY_LENGTH || serverKey?.length !== KEY_LENGTH) return undefined;
  return { iterations, salt, storedKey, serverKey };
}

export function formatScramVerifier(v: ScramVerifier): string {
  return `${SCRAM_MECHANISM}$${v.iterations}:${v.salt.toString('base64')}$${v.storedKey.toString('base64')}:${v.serverKey.toString('base64')}`;
}

/**
 * One server-side SCRAM exchange: call `handleClientFirst`, then `handleClientFinal`.
 * Neither method throws; bad input or a wrong password yields `{ ok: false, reason }`.
 */
export class ScramServerSession {
  private state:
    | { step: 'first' }
    | { step: 'final'; gs2Header: string; nonce: string; clientFirstBare: string; serverFirst: string }
    | { step: 'done' } = { step: 'first' };

  /** `serverNonce` is only for tests with fixed vectors; normally it is random. */
  constructor(
    private readonly verifier: ScramVerifier,
    private readonly serverNonce: string = randomBytes(NONCE_BYTES).toString('base64'),
  ) {}

  handleClientFirst(clientFirst: string): ScramResult<'serverFirst'> {
    if (this.state.step !== 'first') return this.fail('unexpected client-first-message');
    // gs2-header: "n,," (client can't bind) or "y,," (client could, but thinks we can't).
    // "p=…" asks for PLUS, which we never advertise; an authzid is unsupported, as in Postgres.
    const gs2 = /^([ny]),,/.exec(clientFirst);
    if (!gs2) {
      return this.fail(clientFirst.startsWith('p=') ? 'channel binding is not supported' : 'malformed client-first-message');
    }
    const gs2Header = gs2[0];
    const clientFirstBare = clientFirst.slice(gs2Header.length);
    const parts = clientFirstBare.split(',');
    const clientNonce = attr(parts[1], 'r');
    // parts[0] is "n=<user>", whose value Postgres ignores; "m=" (mandatory extension) is refused.
    if (attr(parts[0], 'n') === undefined || clientNonce === undefined || !NONCE.test(clientNonce) || !parts.slice(2).every(isExtension)) {
      return this.fail('malformed client-first-message');
    }
    const nonce = clientNonce + this.serverNonce;
    const v = this.verifier;
    const serverFirst = `r=${nonce},s=${v.salt.toString('base64')},i=${v.iterations}`;
    this.state = { step: 'final', gs2Header, nonce, clientFirstBare, serverFirst };
    return { ok: true, serverFirst };
  }

  handleClientFinal(clientFinal: string): ScramResult<'serverFinal'> {
    const s = this.state;
    if (s.step !== 'final') return this.fail('unexpected client-final-message');
    this.state = { step: 'done' };
    const parts = clientFinal.split(',');
    const binding = attr(parts[0], 'c');
    const nonce = attr(parts[1], 'r');
    const proofText = attr(parts[parts.length - 1], 'p');
    if (binding === undefined || nonce === undefined || proofText === undefined || parts.length < 3 || !parts.slice(2, -1).every(isExtension)) {
      return { ok: false, reason: 'malformed client-final-message' };
    }
    if (binding !== Buffer.from(s.gs2Header).toString('base64')) return { ok: false, reason: 'channel binding mismatch' };
    if (nonce !== s.nonce) return { ok: false, reason: 'nonce mismatch' };
    const proof = decodeBase64(proofText);
    if (proof?.length !== KEY_LENGTH) return { ok: false, reason: 'malformed client proof' };

    const withoutProof = parts.slice(0, -1).join(',');
    const authMessage = `${s.clientFirstBare},${s.serverFirst},${withoutProof}`;
    const clientKey = xor(proof, hmac(this.verifier.storedKey, authMessage));
    if (!safeEqual(sha256(clientKey), this.verifier.storedKey)) return { ok: false, reason: 'wrong password' };
    return { ok: true, serverFinal: `v=${hmac(this.verifier.serverKey, authMessage).toString('base64')}` };
  }

  private fail(reason: string): { ok: false; reason: string } {
    this.state = { step: 'done' };
    return { ok: false, reason };
  }
}

/**
 * PBKDF2 is the whole cost of a backend login and a pool logs in with the same
 * password and salt over and over, so keep the derived keys. Bounded because the
 * salt comes from the backend.
 */
const keyCache = new Map<string, { clientKey: Buffer; serverKey: Buffer }>();
const KEY_CACHE_MAX = 64;

function cachedSaltedKeys(password: string, salt: Buffer, iterations: number): { clientKey: Buffer; serverKey: Buffer } {
  const key = `${iterations}:${salt.toString('base64')}:${password}`;
  let keys = keyCache.get(key);
  if (!keys) {
    keys = saltedKeys(password, salt, iterations);
    if (keyCache.size >= KEY_CACHE_MAX) keyCache.clear();
    keyCache.set(key, keys);
  }
  return keys;
}

/**
 * One client-side SCRAM exchange against a Postgres backend:
 * `clientFirst()` → `clientFinal(serverFirst)` → `verifyServerFinal(serverFinal)`.
 * Methods throw on anything unexpected; the caller fails the connection.
 */
export class ScramClientSession {
  private readonly clientNonce: string;
  private readonly clientFirstBare: string;
  private expectedServerSignature: Buffer | undefined;

  /**
   * Both options exist for fixed test vectors. Postgres takes the user from the
   * startup packet and ignores this one, so by default we send the placeholder "*".
   */
  constructor(
    private readonly password: string,
    options: { user?: string; clientNonce?: string } = {},
  ) {
    this.clientNonce = options.clientNonce ?? randomBytes(NONCE_BYTES).toString('base64');
    const user = (options.user ?? '*').replace(/=/g, '=3D').replace(/,/g, '=2C'); // RFC 5802 saslname
    this.clientFirstBare = `n=${user},r=${this.clientNonce}`;
  }

  clientFirst(): string {
    return `n,,${this.clientFirstBare}`;
  }

  clientFinal(serverFirst: string): string {
    const parts = serverFirst.split(',');
    const nonce = attr(parts[0], 'r');
    const salt = decodeBase64(attr(parts[1], 's') ?? '');
    const iterations = parseIterations(attr(parts[2], 'i') ?? '');
    if (nonce === undefined || !salt || salt.length === 0 || iterations === undefined || !parts.slice(3).every(isExtension)) {
      throw new Error('SCRAM: malformed server-first-message');
    }
    if (!nonce.startsWith(this.clientNonce) || nonce.length === this.clientNonce.length || !NONCE.test(nonce)) {
      throw new Error('SCRAM: server nonce does not extend the client nonce');
    }
    const withoutProof = `c=biws,r=${nonce}`; // biws = base64("n,,")
    const authMessage = `${this.clientFirstBare},${serverFirst},${withoutProof}`;
    const { clientKey, serverKey } = cachedSaltedKeys(this.password, salt, iterations);
    const proof = xor(clientKey, hmac(sha256(clientKey), authMessage));
    this.expectedServerSignature = hmac(serverKey, authMessage);
    return `${withoutProof},p=${proof.toString('base64')}`;
  }

  /** Throws unless the backend proved it knows the password too. */
  verifyServerFinal(serverFinal: string): void {
    if (!this.expectedServerSignature) throw new Error('SCRAM: server-final-message before client-final-message');
    const first = serverFinal.split(',')[0];
    const error = attr(first, 'e');
    if (error !== undefined) throw new Error(`SCRAM: server reported error: ${error}`);
    const signature = decodeBase64(attr(first, 'v') ?? '');
    if (!signature || !safeEqual(signature, this.expectedServerSignature)) {
      throw new Error('SCRAM: server signature mismatch');
    }
  }
}
