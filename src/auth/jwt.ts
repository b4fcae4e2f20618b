/**
 * JWT passwords: a client may send a JWT as its password. It is verified here against the `jwt`
 * config section; the tenant comes from a claim and the claims are later bound into the session
 * as `request.jwt.claims` (PostgREST-style).
 */
import { createPublicKey, type KeyObject } from 'node:crypto';
import { readFileSync } from 'node:fs';
import { resolve } from 'node:path';
import {
  SignJWT,
  createLocalJWKSet,
  decodeProtectedHeader,
  errors,
  jwtVerify,
  type JSONWebKeySet,
  type JWK,
  type JWTHeaderParameters,
  type FlattenedJWSInput,
  type JWTPayload,
} from 'jose';
import type { JwtConfig } from '../config/schema.js';
import { PgError, SqlState } from '../protocol/sqlstate.js';

export interface VerifiedToken {
  /** Tenant named by the tenant claim; undefined when the token has no such claim (the caller decides). */
  tenant: string | undefined;
  claims: Record<string, unknown>;
}

export interface JwtVerifier {
  verify(token: string): Promise<VerifiedToken>;
}

type Algorithm = JwtConfig['algorithms'][number];

const HMAC_ALGS: readonly Algorithm[] = ['HS256', 'HS384', 'HS512'];

/** Longest token we try to verify; a password this long is not a JWT we issue or accept. */
const MAX_TOKEN_LENGTH = 64 * 1024;

function fail(message: string): never {
  throw new PgError(SqlState.InvalidPassword, message, 'FATAL');
}

/**
 * The value at a dot path (`app_metadata.tenant`). Only own properties are followed. A key that
 * itself contains dots (Auth0-style `https://example.com/tenant`) is matched too: at each level
 * the longest dotted prefix that is an own key wins.
 */
export function claimAt(claims: Record<string, unknown>, path: string): unknown {
  const walk = (value: unknown, parts: string[]): unknown => {
    if (value === null || typeof value !== 'object') return undefined;
    for (let i = parts.length; i >= 1; i--) {
      const key = parts.slice(0, i).join('.');
      if (!Object.hasOwn(value, key)) continue;
      const next = (value as Record<string, unknown>)[key];
      if (i === parts.length) return next;
      const found = walk(next, parts.slice(i));
      if (found !== undefined) return found;
    }
    return undefined;
  };
  if (path === '') return undefined;
  return walk(claims, path.split('.'));
}

function tenantFrom(claims: Record<string, unknown>, path: string): string | undefined {
  const value = claimAt(claims, path);
  if (value === undefined) return undefined;
  if (typeof value === 'string') {
    if (value === '') fail(`JWT claim "${path}" is empty`);
    return value;
  }
  if (typeof value === 'number') {
    // Beyond 2^53 JSON numbers are rounded, so two tenants could map to the same id.
    if (!Number.isSafeInteger(value)) fail(`JWT claim "${path}" must be a string (the number ${value} is not a safe integer)`);
    return String(value);
  }
  fail(`JWT claim "${path}" must be a string (got ${value === null ? 'null' : Array.isArray(value) ? 'an array' : typeof value})`);
}

const iso = (seconds: unknown): string =>
  typeof seconds === 'number' && Number.isFinite(seconds) ? new Date(seconds * 1000).toISOString() : String(seconds);

const show = (v: unknown): string => (Array.isArray(v) ? v.map((x) => JSON.stringify(x)).join(', ') : JSON.stringify(v));

/** Which of our algorithms a PEM key can check. */
function pemAlgorithms(key: KeyObject, file: string): Algorithm[] {
  switch (key.asymmetricKeyType) {
    case 'rsa': {
      const bits = key.asymmetricKeyDetails?.modulusLength ?? 0;
      if (bits < 2048) throw new Error(`jwt.publicKey ${file}: RSA key has ${bits} bits; RS256 needs 2048 or more`);
      return ['RS256'];
    }
    case 'ec':
      if (key.asymmetricKeyDetails?.namedCurve === 'prime256v1') return ['ES256'];
      throw new Error(`jwt.publicKey ${file}: EC curve ${key.asymmetricKeyDetails?.namedCurve ?? '?'} is not supported (ES256 needs P-256)`);
    case 'ed25519':
      return ['EdDSA'];
    default:
      throw new Error(`jwt.publicKey ${file}: ${key.asymmetricKeyType ?? 'unknown'} keys are not supported (use RSA, EC P-256 or Ed25519)`);
  }
}

/** Which of our algorithms a JWK can check (undefined: none). */
function jwkAlgorithm(jwk: JWK): Algorithm | undefined {
  if (jwk.use !== undefined && jwk.use !== 'sig') return undefined;
  let alg: Algorithm | undefined;
  if (jwk.kty === 'RSA') alg = 'RS256';
  else if (jwk.kty === 'EC' && jwk.crv === 'P-256') alg = 'ES256';
  else if (jwk.kty === 'OKP' && jwk.crv === 'Ed25519') alg = 'EdDSA';
  if (alg !== undefined && jwk.alg !== undefined && jwk.alg !== alg && !(alg === 'EdDSA' && jwk.alg === 'Ed25519')) return undefined;
  return alg;
}

function readFile(file: string, what: string): string {
  try {
    return readFileSync(file, 'utf8');
  } catch (e) {
    throw new Error(`${what}: cannot read ${file}: ${(e as Error).message}`);
  }
}

function mapJoseError(e: unknown, config: JwtConfig, allowed: readonly Algorithm[]): never {
  if (e instanceof PgError) throw e;
  if (e instanceof errors.JWTExpired) {
    if (e.claim === 'exp') fail(`JWT expired at ${iso(e.payload.exp)}`);
    fail(`JWT expired: ${e.message}`);
  }
  if (e instanceof errors.JWTClaimValidationFailed) {
    const p = e.payload;
    switch (e.claim) {
      case 'nbf':
        if (e.reason === 'check_failed') fail(`JWT not valid before ${iso(p.nbf)}`);
        break;
      case 'aud':
        if (e.reason === 'missing') fail(`JWT has no "aud" claim (expected ${JSON.stringify(config.audience)})`);
        fail(`JWT audience ${show(p.aud)} does not match the expected ${JSON.stringify(config.audience)}`);
      case 'iss':
        if (e.reason === 'missing') fail(`JWT has no "iss" claim (expected ${JSON.stringify(config.issuer)})`);
        fail(`JWT issuer ${show(p.iss)} does not match the expected ${JSON.stringify(config.issuer)}`);
    }
    fail(`JWT claim "${e.claim}" is invalid: ${e.message}`);
  }
  if (e instanceof errors.JWSSignatureVerificationFailed) fail('JWT signature verification failed (wrong key?)');
  if (e instanceof errors.JOSEAlgNotAllowed) fail(`JWT algorithm is not allowed (allowed: ${allowed.join(', ')})`);
  if (e instanceof errors.JWKSNoMatchingKey) fail('JWT signing key not found in the JWKS (unknown "kid" or key type)');
  if (e instanceof errors.JWKSMultipleMatchingKeys) fail('JWT matches several keys in the JWKS; it needs a "kid" header');
  if (e instanceof errors.JWSInvalid || e instanceof errors.JWTInvalid) fail(`malformed JWT: ${e.message}`);
  if (e instanceof errors.JOSENotSupported) fail(`JWT not supported: ${e.message}`);
  fail(`JWT verification failed: ${e instanceof Error ? e.message : String(e)}`);
}

export function createJwtVerifier(config: JwtConfig, baseDir = process.cwd()): JwtVerifier {
  const secret = config.secret !== undefined ? new TextEncoder().encode(config.secret) : undefined;

  let pemKey: KeyObject | undefined;
  let pemAlgs: Algorithm[] = [];
  if (config.publicKey !== undefined) {
    const file = resolve(baseDir, config.publicKey);
    const pem = readFile(file, 'jwt.publicKey');
    // createPublicKey would derive the public half of a private key: refuse it, the proxy must not hold signing keys.
    if (/-----BEGIN [A-Z ]*PRIVATE KEY-----/.test(pem)) {
      throw new Error(`jwt.publicKey ${file}: holds a private key; give the public key only (openssl pkey -in KEY -pubout)`);
    }
    try {
      pemKey = createPublicKey(pem);
    } catch (e) {
      throw new Error(`jwt.publicKey ${file}: not a PEM public key: ${(e as Error).message}`);
    }
    pemAlgs = pemAlgorithms(pemKey, file);
  }

  let jwks: ReturnType<typeof createLocalJWKSet> | undefined;
  let jwksAlgs: Algorithm[] = [];
  if (config.jwks !== undefined) {
    const file = resolve(baseDir, config.jwks);
    let set: JSONWebKeySet;
    try {
      set = JSON.parse(readFile(file, 'jwt.jwks')) as JSONWebKeySet;
    } catch (e) {
      if ((e as Error).message.startsWith('jwt.jwks')) throw e;
      throw new Error(`jwt.jwks ${file}: not JSON: ${(e as Error).message}`);
    }
    if (set === null || typeof set !== 'object' || !Array.isArray(set.keys)) throw new Error(`jwt.jwks ${file}: expected a JSON Web Key Set ({"keys": [...]})`);
    for (const k of set.keys) {
      if (k !== null && typeof k === 'object' && ('d' in k || 'k' in k)) throw new Error(`jwt.jwks ${file}: holds a private or secret key; it must hold public keys only`);
    }
    try {
      jwks = createLocalJWKSet(set);
    } catch (e) {
      throw new Error(`jwt.jwks ${file}: ${(e as Error).message}`);
    }
    jwksAlgs = [...new Set(set.keys.map(jwkAlgorithm).filter((a): a is Algorithm => a !== undefined))];
  }

  // Only what is configured AND what the key material can check: HS* never against a public key.
  const usable = new Set<Algorithm>([...(secret ? HMAC_ALGS : []), ...pemAlgs, ...jwksAlgs]);
  const allowed = config.algorithms.filter((a) => usable.has(a));
  if (allowed.length === 0) {
    throw new Error(`jwt.algorithms [${config.algorithms.join(', ')}] has none that the configured keys can verify (they can verify: ${[...usable].join(', ') || 'nothing'})`);
  }
  const allowedSet = new Set<string>(allowed);

  const getKey = async (header: JWTHeaderParameters, token: FlattenedJWSInput) => {
    const alg = header.alg as Algorithm;
    if (HMAC_ALGS.includes(alg)) return secret!;
    if (pemKey !== undefined && pemAlgs.includes(alg) && (jwks === undefined || header.kid === undefined || !jwksAlgs.includes(alg))) return pemKey;
    if (jwks !== undefined) {
      try {
        return await jwks(header, token);
      } catch (e) {
        // jose matches a JWK's "alg" exactly, but a key published as "Ed25519" (RFC 9864) also checks EdDSA tokens.
        if (alg === 'EdDSA' && e instanceof errors.JWKSNoMatchingKey) return jwks({ ...header, alg: 'Ed25519' }, token);
        throw e;
      }
    }
    // Unreachable: alg was checked against `allowed` before verification.
    return fail(`JWT algorithm ${JSON.stringify(alg)} is not allowed (allowed: ${allowed.join(', ')})`);
  };

  const options = {
    algorithms: allowed,
    issuer: config.issuer,
    audience: config.audience,
    clockTolerance: config.clockTolerance / 1000,
  };

  return {
    async verify(token: string): Promise<VerifiedToken> {
      if (typeof token !== 'string' || token === '') fail('malformed JWT: empty token');
      if (token.length > MAX_TOKEN_LENGTH) fail(`malformed JWT: longer than ${MAX_TOKEN_LENGTH} characters`);
      const parts = token.split('.');
      if (parts.length !== 3) fail(`malformed JWT: expected three base64url segments separated by dots, got ${parts.length}`);
      if (!parts.every((p) => /^[A-Za-z0-9_-]*$/.test(p))) fail('malformed JWT: segments must be base64url (A-Z a-z 0-9 - _, no padding)');

      let header: ReturnType<typeof decodeProtectedHeader>;
      try {
        header = decodeProtectedHeader(token);
      } catch {
        fail('malformed JWT: the header is not base64url-encoded JSON');
      }
      const alg = header.alg;
      if (typeof alg !== 'string' || alg === '') fail('malformed JWT: the header has no "alg"');
      if (alg.toLowerCase() === 'none') fail('JWT algorithm "none" is not allowed');
      if (!allowedSet.has(alg)) fail(`JWT algorithm ${JSON.stringify(alg)} is not allowed (allowed: ${allowed.join(', ')})`);

      let payload: JWTPayload;
      try {
        ({ payload } = await jwtVerify(token, getKey, options));
      } catch (e) {
        mapJoseError(e, config, allowed);
      }
      const claims = payload as Record<string, unknown>;
      return { tenant: tenantFrom(claims, config.tenantClaim), claims };
    },
  };
}

/**
 * The keys a minted token nests the tenant claim under. A namespaced claim name (Auth0 style,
 * `https://example.com/tenant`) keeps the dots of its URI: only dots after its last `/` nest.
 */
function mintPath(path: string): string[] {
  const slash = path.lastIndexOf('/');
  if (slash === -1) return path.split('.');
  const [first, ...rest] = path.slice(slash + 1).split('.');
  return [path.slice(0, slash + 1) + first, ...rest];
}

function setAt(target: Record<string, unknown>, path: string, value: unknown): void {
  const parts = mintPath(path);
  let node = target;
  for (const part of parts.slice(0, -1)) {
    const next = Object.hasOwn(node, part) ? node[part] : undefined;
    if (next === undefined) {
      const created: Record<string, unknown> = {};
      node[part] = created;
      node = created;
    } else if (next !== null && typeof next === 'object' && !Array.isArray(next)) {
      node = next as Record<string, unknown>;
    } else {
      throw new Error(`cannot set the tenant claim "${path}": "${part}" is already set to a non-object`);
    }
  }
  node[parts[parts.length - 1]] = value;
}

/** An HS256 token signed with `config.secret` that this config's verifier accepts (`pgtenant token`). */
export async function mintToken(
  config: JwtConfig,
  opts: { tenant: string; ttlSeconds: number; subject?: string; role?: string; extra?: Record<string, unknown> },
): Promise<string> {
  if (config.secret === undefined) throw new Error('jwt.secret is required to mint tokens (they are signed with HS256)');
  if (!config.algorithms.includes('HS256')) throw new Error(`jwt.algorithms [${config.algorithms.join(', ')}] does not allow HS256, so a minted token would be rejected`);
  if (!Number.isFinite(opts.ttlSeconds) || opts.ttlSeconds <= 0) throw new Error(`token lifetime must be a positive number of seconds, got ${opts.ttlSeconds}`);
  if (opts.tenant === '') throw new Error('tenant must not be empty');

  const payload: Record<string, unknown> = structuredClone(opts.extra ?? {});
  if (opts.role !== undefined) payload.role = opts.role;
  setAt(payload, config.tenantClaim, opts.tenant);

  const now = Math.floor(Date.now() / 1000);
  const jwt = new SignJWT(payload as JWTPayload)
    .setProtectedHeader({ alg: 'HS256', typ: 'JWT' })
    .setIssuedAt(now)
    .setExpirationTime(now + Math.ceil(opts.ttlSeconds));
  if (opts.subject !== undefined) jwt.setSubject(opts.subject);
  if (config.issuer !== undefined) jwt.setIssuer(config.issuer);
  if (config.audience !== undefined) jwt.setAudience(config.audience);
  return jwt.sign(new TextEncoder().encode(config.secret));
}
