import { generateKeyPairSync } from 'node:crypto';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import {
  CompactSign,
  SignJWT,
  base64url,
  decodeJwt,
  decodeProtectedHeader,
  exportJWK,
  exportPKCS8,
  exportSPKI,
  generateKeyPair,
  type CryptoKey,
  type JWK,
  type JWTPayload,
} from 'jose';
import { claimAt, createJwtVerifier, mintToken } from '../../../src/auth/jwt.js';
import { configSchema, type JwtConfig } from '../../../src/config/schema.js';
import { PgError } from '../../../src/protocol/sqlstate.js';

// ---------------------------------------------------------------------------------------------
// Helpers
// ---------------------------------------------------------------------------------------------

const jwtSchema = configSchema.shape.jwt.unwrap();

/** A JwtConfig as the real config loader would produce it (defaults applied, durations in ms). */
const cfg = (input: Record<string, unknown>): JwtConfig => jwtSchema.parse(input);

const SECRET = 'a-very-secret-hmac-key-0123456789';
const OTHER_SECRET = 'another-secret-hmac-key-987654321';

const enc = (s: string): Uint8Array => new TextEncoder().encode(s);
const b64json = (v: unknown): string => base64url.encode(JSON.stringify(v));
const now = (): number => Math.floor(Date.now() / 1000);

type Alg = JwtConfig['algorithms'][number];
type SigningKey = CryptoKey | Uint8Array;

async function sign(
  payload: JWTPayload,
  key: SigningKey,
  alg: Alg | string,
  header: Record<string, unknown> = {},
): Promise<string> {
  return new SignJWT(payload).setProtectedHeader({ alg, typ: 'JWT', ...header }).sign(key);
}

/** Awaits a rejection and checks it is a FATAL 28P01 PgError whose message contains `fragment`. */
async function expectAuthError(p: Promise<unknown>, fragment: string | RegExp): Promise<PgError> {
  let err: unknown;
  try {
    await p;
  } catch (e) {
    err = e;
  }
  expect(err, 'expected the promise to reject').toBeInstanceOf(PgError);
  const pgErr = err as PgError;
  expect(pgErr.code).toBe('28P01');
  expect(pgErr.severity).toBe('FATAL');
  if (typeof fragment === 'string') expect(pgErr.message).toContain(fragment);
  else expect(pgErr.message).toMatch(fragment);
  return pgErr;
}

const isoAt = (seconds: number): string => new Date(seconds * 1000).toISOString();

// ---------------------------------------------------------------------------------------------
// Key material (generated once, written to a temp dir)
// ---------------------------------------------------------------------------------------------

interface Pair {
  publicKey: CryptoKey;
  privateKey: CryptoKey;
}

let dir: string;
let rsa: Pair;
let rsa2: Pair;
let ec: Pair;
let ed: Pair;
let ed2: Pair;
let rsaPem: string;

const write = (name: string, content: string): string => {
  writeFileSync(path.join(dir, name), content);
  return name;
};

const withKid = async (key: CryptoKey, kid: string): Promise<JWK> => ({ ...(await exportJWK(key)), kid });

beforeAll(async () => {
  dir = mkdtempSync(path.join(os.tmpdir(), 'pgtenant-jwt-test-'));
  [rsa, rsa2, ec, ed, ed2] = await Promise.all([
    generateKeyPair('RS256', { extractable: true }),
    generateKeyPair('RS256', { extractable: true }),
    generateKeyPair('ES256', { extractable: true }),
    generateKeyPair('EdDSA', { extractable: true }),
    generateKeyPair('EdDSA', { extractable: true }),
  ]);
  rsaPem = await exportSPKI(rsa.publicKey);
  write('rsa.pem', rsaPem);
  write('rsa2.pem', await exportSPKI(rsa2.publicKey));
  write('ec.pem', await exportSPKI(ec.publicKey));
  write('ed.pem', await exportSPKI(ed.publicKey));

  write(
    'jwks.json',
    JSON.stringify({
      keys: [
        await withKid(rsa.publicKey, 'rsa-1'),
        await withKid(rsa2.publicKey, 'rsa-2'),
        await withKid(ec.publicKey, 'ec-1'),
        await withKid(ed.publicKey, 'ed-1'),
      ],
    }),
  );
  write('jwks-ec.json', JSON.stringify({ keys: [await exportJWK(ec.publicKey)] }));
  // RFC 9864 fully-specified algorithm name on an Ed25519 key, next to a key with alg "EdDSA".
  write(
    'jwks-ed25519-alg.json',
    JSON.stringify({ keys: [{ ...(await withKid(ed.publicKey, 'ed-new')), alg: 'Ed25519' }, { ...(await withKid(ed2.publicKey, 'ed-old')), alg: 'EdDSA' }] }),
  );
  write('jwks-private.json', JSON.stringify({ keys: [await withKid(rsa.privateKey, 'rsa-1')] }));
  write('jwks-oct.json', JSON.stringify({ keys: [{ kty: 'oct', k: base64url.encode(SECRET), kid: 'hmac' }] }));
  write('jwks-notjson.json', '{"keys": [');
  write('jwks-notaset.json', JSON.stringify({ kty: 'RSA' }));
  write('rsa-private.pem', await exportPKCS8(rsa.privateKey));
  write('not-a-key.pem', '-----BEGIN PUBLIC KEY-----\nbm90IGEga2V5\n-----END PUBLIC KEY-----\n');

  const weakRsa = generateKeyPairSync('rsa', { modulusLength: 1024 });
  write('rsa1024.pem', weakRsa.publicKey.export({ type: 'spki', format: 'pem' }) as string);
  const p384 = generateKeyPairSync('ec', { namedCurve: 'secp384r1' });
  write('p384.pem', p384.publicKey.export({ type: 'spki', format: 'pem' }) as string);
});

afterAll(() => {
  if (dir) rmSync(dir, { recursive: true, force: true });
});

// ---------------------------------------------------------------------------------------------
// Valid tokens
// ---------------------------------------------------------------------------------------------

describe('createJwtVerifier: valid tokens', () => {
  it.each(['HS256', 'HS384', 'HS512'] as const)('%s with jwt.secret returns the tenant and the claims', async (alg) => {
    const verifier = createJwtVerifier(cfg({ secret: SECRET }), dir);
    const iat = now();
    const token = await sign({ tenant_id: 'acme', sub: 'user-1', role: 'app_user', iat, exp: iat + 300 }, enc(SECRET), alg);
    expect(decodeProtectedHeader(token).alg).toBe(alg);
    const result = await verifier.verify(token);
    expect(result.tenant).toBe('acme');
    expect(result.claims).toEqual({ tenant_id: 'acme', sub: 'user-1', role: 'app_user', iat, exp: iat + 300 });
  });

  const asymmetric: { alg: Alg; pair: () => Pair; pem: string; kid: string }[] = [
    { alg: 'RS256', pair: () => rsa, pem: 'rsa.pem', kid: 'rsa-1' },
    { alg: 'ES256', pair: () => ec, pem: 'ec.pem', kid: 'ec-1' },
    { alg: 'EdDSA', pair: () => ed, pem: 'ed.pem', kid: 'ed-1' },
  ];

  it.each(asymmetric)('$alg with a PEM public key returns the tenant and the claims', async ({ alg, pair, pem }) => {
    const verifier = createJwtVerifier(cfg({ publicKey: pem }), dir);
    const token = await sign({ tenant_id: `t-${alg}`, sub: 'svc', exp: now() + 60 }, pair().privateKey, alg);
    const result = await verifier.verify(token);
    expect(result.tenant).toBe(`t-${alg}`);
    expect(result.claims).toMatchObject({ tenant_id: `t-${alg}`, sub: 'svc' });
  });

  it.each(asymmetric)('$alg with a JWKS file (selected by kid) returns the tenant and the claims', async ({ alg, pair, kid }) => {
    const verifier = createJwtVerifier(cfg({ jwks: 'jwks.json' }), dir);
    const token = await sign({ tenant_id: `j-${alg}`, exp: now() + 60 }, pair().privateKey, alg, { kid });
    const result = await verifier.verify(token);
    expect(result.tenant).toBe(`j-${alg}`);
    expect(result.claims.tenant_id).toBe(`j-${alg}`);
  });

  it('resolves key files against baseDir, and accepts absolute paths', async () => {
    const token = await sign({ tenant_id: 'acme' }, rsa.privateKey, 'RS256');
    await expect(createJwtVerifier(cfg({ publicKey: 'rsa.pem' }), dir).verify(token)).resolves.toMatchObject({ tenant: 'acme' });
    await expect(createJwtVerifier(cfg({ publicKey: path.join(dir, 'rsa.pem') }), '/nonexistent').verify(token)).resolves.toMatchObject({ tenant: 'acme' });
    expect(() => createJwtVerifier(cfg({ publicKey: 'rsa.pem' }), path.join(dir, 'nope'))).toThrow(/jwt\.publicKey: cannot read .*rsa\.pem/);
  });

  it('refuses a private key given as jwt.publicKey (the proxy must not hold signing keys)', () => {
    expect(() => createJwtVerifier(cfg({ publicKey: 'rsa-private.pem' }), dir)).toThrow(/jwt\.publicKey .*rsa-private\.pem: holds a private key; give the public key only/);
  });

  it('a config with secret, PEM and JWKS picks the right key for each token', async () => {
    const verifier = createJwtVerifier(cfg({ secret: SECRET, publicKey: 'rsa.pem', jwks: 'jwks.json' }), dir);
    const hs = await sign({ tenant_id: 'hs' }, enc(SECRET), 'HS256');
    const rsNoKid = await sign({ tenant_id: 'pem' }, rsa.privateKey, 'RS256');
    const rsKid = await sign({ tenant_id: 'jwks' }, rsa2.privateKey, 'RS256', { kid: 'rsa-2' });
    const esKid = await sign({ tenant_id: 'ec' }, ec.privateKey, 'ES256', { kid: 'ec-1' });
    expect((await verifier.verify(hs)).tenant).toBe('hs');
    expect((await verifier.verify(rsNoKid)).tenant).toBe('pem');
    expect((await verifier.verify(rsKid)).tenant).toBe('jwks');
    expect((await verifier.verify(esKid)).tenant).toBe('ec');
  });
});

// ---------------------------------------------------------------------------------------------
// Tenant claim
// ---------------------------------------------------------------------------------------------

describe('createJwtVerifier: tenant claim', () => {
  const hs = (payload: JWTPayload): Promise<string> => sign(payload, enc(SECRET), 'HS256');

  it('reads a nested claim (app_metadata.tenant)', async () => {
    const verifier = createJwtVerifier(cfg({ secret: SECRET, tenantClaim: 'app_metadata.tenant' }), dir);
    const result = await verifier.verify(await hs({ app_metadata: { tenant: 'nested-co', plan: 'pro' }, tenant_id: 'decoy' }));
    expect(result.tenant).toBe('nested-co');
    expect(result.claims.app_metadata).toEqual({ tenant: 'nested-co', plan: 'pro' });
  });

  it('reads an Auth0-style namespaced key that itself contains dots', async () => {
    const claim = 'https://example.com/tenant';
    const verifier = createJwtVerifier(cfg({ secret: SECRET, tenantClaim: claim }), dir);
    const result = await verifier.verify(await hs({ [claim]: 'globex' }));
    expect(result.tenant).toBe('globex');
  });

  it('reads a nested claim under an Auth0-style namespaced key', async () => {
    const verifier = createJwtVerifier(cfg({ secret: SECRET, tenantClaim: 'https://example.com/app.tenant' }), dir);
    const result = await verifier.verify(await hs({ 'https://example.com/app': { tenant: 'initech' } }));
    expect(result.tenant).toBe('initech');
  });

  it('turns a numeric tenant claim into a string', async () => {
    const verifier = createJwtVerifier(cfg({ secret: SECRET }), dir);
    const result = await verifier.verify(await hs({ tenant_id: 42 }));
    expect(result.tenant).toBe('42');
    expect(result.claims.tenant_id).toBe(42);
    expect((await verifier.verify(await hs({ tenant_id: 0 }))).tenant).toBe('0');
  });

  it('rejects a numeric tenant claim that is not a safe integer', async () => {
    const verifier = createJwtVerifier(cfg({ secret: SECRET }), dir);
    await expectAuthError(verifier.verify(await hs({ tenant_id: 2 ** 53 + 2 })), 'JWT claim "tenant_id" must be a string (the number 9007199254740994 is not a safe integer)');
    await expectAuthError(verifier.verify(await hs({ tenant_id: 1.5 })), 'the number 1.5 is not a safe integer');
  });

  it('returns tenant undefined when the tenant claim is missing, with the claims intact', async () => {
    const verifier = createJwtVerifier(cfg({ secret: SECRET, tenantClaim: 'app_metadata.tenant' }), dir);
    const result = await verifier.verify(await hs({ sub: 'nobody', app_metadata: { plan: 'free' } }));
    expect(result.tenant).toBeUndefined();
    expect(result.claims).toEqual({ sub: 'nobody', app_metadata: { plan: 'free' } });
    const result2 = await createJwtVerifier(cfg({ secret: SECRET }), dir).verify(await hs({ sub: 'nobody' }));
    expect(result2.tenant).toBeUndefined();
  });

  it('rejects an empty or non-scalar tenant claim', async () => {
    const verifier = createJwtVerifier(cfg({ secret: SECRET }), dir);
    await expectAuthError(verifier.verify(await hs({ tenant_id: '' })), 'JWT claim "tenant_id" is empty');
    await expectAuthError(verifier.verify(await hs({ tenant_id: true })), 'JWT claim "tenant_id" must be a string (got boolean)');
    await expectAuthError(verifier.verify(await hs({ tenant_id: null })), 'JWT claim "tenant_id" must be a string (got null)');
    await expectAuthError(verifier.verify(await hs({ tenant_id: ['a', 'b'] })), 'JWT claim "tenant_id" must be a string (got an array)');
    await expectAuthError(verifier.verify(await hs({ tenant_id: { id: 'a' } })), 'JWT claim "tenant_id" must be a string (got object)');
  });
});

describe('claimAt', () => {
  it('follows dot paths through own properties only', () => {
    expect(claimAt({ a: { b: { c: 1 } } }, 'a.b.c')).toBe(1);
    expect(claimAt({ a: { b: 1 } }, 'a.x')).toBeUndefined();
    expect(claimAt({ a: 'str' }, 'a.length')).toBeUndefined();
    expect(claimAt({}, 'constructor')).toBeUndefined();
    expect(claimAt({}, 'toString')).toBeUndefined();
    expect(claimAt({ a: {} }, 'a.__proto__')).toBeUndefined();
    expect(claimAt({ a: 1 }, '')).toBeUndefined();
  });

  it('prefers the longest dotted key at each level and falls back to shorter ones', () => {
    expect(claimAt({ 'a.b': 'long', a: { b: 'short' } }, 'a.b')).toBe('long');
    expect(claimAt({ 'a.b': { c: 'x' } }, 'a.b.c')).toBe('x');
    // The longest key exists but does not lead to the value: the shorter split is tried.
    expect(claimAt({ 'a.b': { z: 1 }, a: { b: { c: 'y' } } }, 'a.b.c')).toBe('y');
  });
});

// ---------------------------------------------------------------------------------------------
// exp / nbf
// ---------------------------------------------------------------------------------------------

describe('createJwtVerifier: exp and nbf', () => {
  const hs = (payload: JWTPayload): Promise<string> => sign(payload, enc(SECRET), 'HS256');

  it('rejects an expired token, naming the expiry time', async () => {
    const verifier = createJwtVerifier(cfg({ secret: SECRET }), dir);
    const exp = now() - 3600;
    await expectAuthError(verifier.verify(await hs({ tenant_id: 'acme', exp })), `JWT expired at ${isoAt(exp)}`);
  });

  it('rejects a token expired by more than clockTolerance', async () => {
    const verifier = createJwtVerifier(cfg({ secret: SECRET, clockTolerance: '30s' }), dir);
    const exp = now() - 120;
    await expectAuthError(verifier.verify(await hs({ tenant_id: 'acme', exp })), `JWT expired at ${isoAt(exp)}`);
  });

  it('accepts a token expired by less than clockTolerance', async () => {
    const verifier = createJwtVerifier(cfg({ secret: SECRET, clockTolerance: '30s' }), dir);
    const result = await verifier.verify(await hs({ tenant_id: 'acme', exp: now() - 10 }));
    expect(result.tenant).toBe('acme');
    // clockTolerance is given in ms (number form too).
    const verifierMs = createJwtVerifier(cfg({ secret: SECRET, clockTolerance: 30_000 }), dir);
    expect((await verifierMs.verify(await hs({ tenant_id: 'acme', exp: now() - 10 }))).tenant).toBe('acme');
  });

  it('rejects a token whose nbf is in the future', async () => {
    const verifier = createJwtVerifier(cfg({ secret: SECRET }), dir);
    const nbf = now() + 3600;
    await expectAuthError(verifier.verify(await hs({ tenant_id: 'acme', nbf })), `JWT not valid before ${isoAt(nbf)}`);
  });

  it('accepts a token whose nbf is only slightly ahead, within clockTolerance', async () => {
    const verifier = createJwtVerifier(cfg({ secret: SECRET, clockTolerance: '1m' }), dir);
    expect((await verifier.verify(await hs({ tenant_id: 'acme', nbf: now() + 20 }))).tenant).toBe('acme');
  });

  it('rejects a non-numeric exp', async () => {
    const verifier = createJwtVerifier(cfg({ secret: SECRET }), dir);
    await expectAuthError(verifier.verify(await hs({ tenant_id: 'acme', exp: 'tomorrow' as unknown as number })), 'JWT claim "exp" is invalid');
  });
});

// ---------------------------------------------------------------------------------------------
// iss / aud
// ---------------------------------------------------------------------------------------------

describe('createJwtVerifier: issuer and audience', () => {
  const ISS = 'https://issuer.example';
  const AUD = 'pgtenant';
  const hs = (payload: JWTPayload): Promise<string> => sign(payload, enc(SECRET), 'HS256');
  const verifier = () => createJwtVerifier(cfg({ secret: SECRET, issuer: ISS, audience: AUD }), dir);

  it('accepts the configured issuer and audience (also an audience array that contains it)', async () => {
    expect((await verifier().verify(await hs({ tenant_id: 'a', iss: ISS, aud: AUD }))).tenant).toBe('a');
    expect((await verifier().verify(await hs({ tenant_id: 'b', iss: ISS, aud: ['other', AUD] }))).tenant).toBe('b');
  });

  it('rejects a wrong audience', async () => {
    await expectAuthError(verifier().verify(await hs({ tenant_id: 'a', iss: ISS, aud: 'other-api' })), 'JWT audience "other-api" does not match the expected "pgtenant"');
    await expectAuthError(verifier().verify(await hs({ tenant_id: 'a', iss: ISS, aud: ['x', 'y'] })), 'JWT audience "x", "y" does not match the expected "pgtenant"');
  });

  it('rejects a missing audience', async () => {
    await expectAuthError(verifier().verify(await hs({ tenant_id: 'a', iss: ISS })), 'JWT has no "aud" claim (expected "pgtenant")');
  });

  it('rejects a wrong issuer', async () => {
    await expectAuthError(verifier().verify(await hs({ tenant_id: 'a', iss: 'https://evil.example', aud: AUD })), 'JWT issuer "https://evil.example" does not match the expected "https://issuer.example"');
  });

  it('rejects a missing issuer', async () => {
    await expectAuthError(verifier().verify(await hs({ tenant_id: 'a', aud: AUD })), 'JWT has no "iss" claim (expected "https://issuer.example")');
  });

  it('does not check iss/aud when none is configured', async () => {
    const v = createJwtVerifier(cfg({ secret: SECRET }), dir);
    expect((await v.verify(await hs({ tenant_id: 'a', iss: 'whoever', aud: 'anything' }))).tenant).toBe('a');
  });
});

// ---------------------------------------------------------------------------------------------
// Signatures, algorithms, attacks
// ---------------------------------------------------------------------------------------------

describe('createJwtVerifier: signatures and algorithms', () => {
  it('rejects an HS256 token signed with another secret', async () => {
    const verifier = createJwtVerifier(cfg({ secret: SECRET }), dir);
    const token = await sign({ tenant_id: 'acme' }, enc(OTHER_SECRET), 'HS256');
    await expectAuthError(verifier.verify(token), 'JWT signature verification failed');
  });

  it('rejects an RS256 token signed with another RSA key', async () => {
    const verifier = createJwtVerifier(cfg({ publicKey: 'rsa.pem' }), dir);
    const token = await sign({ tenant_id: 'acme' }, rsa2.privateKey, 'RS256');
    await expectAuthError(verifier.verify(token), 'JWT signature verification failed');
  });

  it('rejects a token whose payload was swapped (tenant forged) under the original signature', async () => {
    const verifier = createJwtVerifier(cfg({ secret: SECRET }), dir);
    const [h, , s] = (await sign({ tenant_id: 'acme' }, enc(SECRET), 'HS256')).split('.');
    await expectAuthError(verifier.verify(`${h}.${b64json({ tenant_id: 'victim' })}.${s}`), 'JWT signature verification failed');
  });

  it('rejects an unsigned alg "none" token', async () => {
    const verifier = createJwtVerifier(cfg({ secret: SECRET, publicKey: 'rsa.pem', jwks: 'jwks.json' }), dir);
    const payload = b64json({ tenant_id: 'acme', exp: now() + 60 });
    const unsigned = `${b64json({ alg: 'none', typ: 'JWT' })}.${payload}.`;
    await expectAuthError(verifier.verify(unsigned), 'JWT algorithm "none" is not allowed');
    await expectAuthError(verifier.verify(`${b64json({ alg: 'None' })}.${payload}.`), 'algorithm "none"');
    await expectAuthError(verifier.verify(`${b64json({ alg: 'NONE' })}.${payload}.c2ln`), 'algorithm "none"');
  });

  it('rejects the key-confusion attack: HS256 signed with the PEM public key text when only a public key is configured', async () => {
    // Default algorithms include HS256, but no secret is configured, so HS* must never be checked.
    const config = cfg({ publicKey: 'rsa.pem' });
    expect(config.algorithms).toContain('HS256');
    const verifier = createJwtVerifier(config, dir);
    const forged = await sign({ tenant_id: 'victim' }, enc(rsaPem), 'HS256');
    await expectAuthError(verifier.verify(forged), 'JWT algorithm "HS256" is not allowed (allowed: RS256)');

    const jwksVerifier = createJwtVerifier(cfg({ jwks: 'jwks.json' }), dir);
    const forgedJwk = await sign({ tenant_id: 'victim' }, enc(JSON.stringify(await exportJWK(rsa.publicKey))), 'HS256', { kid: 'rsa-1' });
    await expectAuthError(jwksVerifier.verify(forgedJwk), 'JWT algorithm "HS256" is not allowed (allowed: RS256, ES256, EdDSA)');
  });

  it('rejects the key-confusion attack when a secret is configured too (it is the secret, not the PEM, that is checked)', async () => {
    const verifier = createJwtVerifier(cfg({ secret: SECRET, publicKey: 'rsa.pem' }), dir);
    const forged = await sign({ tenant_id: 'victim' }, enc(rsaPem), 'HS256');
    await expectAuthError(verifier.verify(forged), 'JWT signature verification failed');
  });

  it('rejects an algorithm not listed in jwt.algorithms', async () => {
    const verifier = createJwtVerifier(cfg({ secret: SECRET, algorithms: ['HS256'] }), dir);
    const token = await sign({ tenant_id: 'acme' }, enc(SECRET), 'HS512');
    await expectAuthError(verifier.verify(token), 'JWT algorithm "HS512" is not allowed (allowed: HS256)');

    const pemVerifier = createJwtVerifier(cfg({ secret: SECRET, publicKey: 'rsa.pem', algorithms: ['HS256'] }), dir);
    await expectAuthError(pemVerifier.verify(await sign({ tenant_id: 'acme' }, rsa.privateKey, 'RS256')), 'JWT algorithm "RS256" is not allowed (allowed: HS256)');
  });

  it('rejects an algorithm the configured keys cannot check, or that pgtenant does not support', async () => {
    const verifier = createJwtVerifier(cfg({ secret: SECRET }), dir);
    await expectAuthError(verifier.verify(await sign({ tenant_id: 'acme' }, rsa.privateKey, 'RS256')), 'JWT algorithm "RS256" is not allowed (allowed: HS256, HS384, HS512)');
    const pemVerifier = createJwtVerifier(cfg({ publicKey: 'rsa.pem' }), dir);
    const ps256 = await new SignJWT({ tenant_id: 'acme' }).setProtectedHeader({ alg: 'PS256' }).sign((await generateKeyPair('PS256')).privateKey);
    await expectAuthError(pemVerifier.verify(ps256), 'JWT algorithm "PS256" is not allowed (allowed: RS256)');
  });

  it('rejects a header without alg', async () => {
    const verifier = createJwtVerifier(cfg({ secret: SECRET }), dir);
    await expectAuthError(verifier.verify(`${b64json({ typ: 'JWT' })}.${b64json({ tenant_id: 'a' })}.c2ln`), 'malformed JWT: the header has no "alg"');
    await expectAuthError(verifier.verify(`${b64json({ alg: 42 })}.${b64json({ tenant_id: 'a' })}.c2ln`), 'malformed JWT: the header has no "alg"');
  });
});

// ---------------------------------------------------------------------------------------------
// Malformed tokens
// ---------------------------------------------------------------------------------------------

describe('createJwtVerifier: malformed tokens', () => {
  const verifier = () => createJwtVerifier(cfg({ secret: SECRET }), dir);

  it('rejects a token with two or four segments', async () => {
    const [h, p, s] = (await sign({ tenant_id: 'a' }, enc(SECRET), 'HS256')).split('.');
    await expectAuthError(verifier().verify(`${h}.${p}`), 'malformed JWT: expected three base64url segments separated by dots, got 2');
    await expectAuthError(verifier().verify(`${h}.${p}.${s}.${s}`), 'malformed JWT: expected three base64url segments separated by dots, got 4');
    await expectAuthError(verifier().verify('hunter2'), 'malformed JWT: expected three base64url segments separated by dots, got 1');
  });

  it('rejects segments with characters outside base64url', async () => {
    const [h, p, s] = (await sign({ tenant_id: 'a' }, enc(SECRET), 'HS256')).split('.');
    const msg = 'malformed JWT: segments must be base64url (A-Z a-z 0-9 - _, no padding)';
    await expectAuthError(verifier().verify(`${h}.${p}.${s}=`), msg);
    await expectAuthError(verifier().verify(`${h}.${p}+/.${s}`), msg);
    await expectAuthError(verifier().verify(`${h} .${p}.${s}`), msg);
    await expectAuthError(verifier().verify(`${h}.${p}.${s}\n`), msg);
  });

  it('rejects a header that is not base64url-encoded JSON', async () => {
    const [, p, s] = (await sign({ tenant_id: 'a' }, enc(SECRET), 'HS256')).split('.');
    const msg = 'malformed JWT: the header is not base64url-encoded JSON';
    await expectAuthError(verifier().verify(`${base64url.encode('not json')}.${p}.${s}`), msg);
    await expectAuthError(verifier().verify(`${b64json(['HS256'])}.${p}.${s}`), msg);
    await expectAuthError(verifier().verify(`.${p}.${s}`), msg);
  });

  it('rejects a correctly signed payload that is not a JSON object', async () => {
    const signed = await new CompactSign(enc('not json')).setProtectedHeader({ alg: 'HS256' }).sign(enc(SECRET));
    await expectAuthError(verifier().verify(signed), 'malformed JWT:');
    const array = await new CompactSign(enc('["a"]')).setProtectedHeader({ alg: 'HS256' }).sign(enc(SECRET));
    await expectAuthError(verifier().verify(array), 'malformed JWT:');
  });

  it('rejects an empty token (and a non-string)', async () => {
    await expectAuthError(verifier().verify(''), 'malformed JWT: empty token');
    await expectAuthError(verifier().verify(undefined as unknown as string), 'malformed JWT: empty token');
  });

  it('rejects a 70 kB token without verifying it', async () => {
    const big = await sign({ tenant_id: 'a', pad: 'x'.repeat(70 * 1024) }, enc(SECRET), 'HS256');
    expect(big.length).toBeGreaterThan(70 * 1024);
    await expectAuthError(verifier().verify(big), 'malformed JWT: longer than 65536 characters');
  });
});

// ---------------------------------------------------------------------------------------------
// JWKS
// ---------------------------------------------------------------------------------------------

describe('createJwtVerifier: JWKS', () => {
  it('selects the key by kid', async () => {
    const verifier = createJwtVerifier(cfg({ jwks: 'jwks.json' }), dir);
    const one = await sign({ tenant_id: 'one' }, rsa.privateKey, 'RS256', { kid: 'rsa-1' });
    const two = await sign({ tenant_id: 'two' }, rsa2.privateKey, 'RS256', { kid: 'rsa-2' });
    expect((await verifier.verify(one)).tenant).toBe('one');
    expect((await verifier.verify(two)).tenant).toBe('two');
    // Signed with key 1 but claiming kid of key 2.
    const lying = await sign({ tenant_id: 'x' }, rsa.privateKey, 'RS256', { kid: 'rsa-2' });
    await expectAuthError(verifier.verify(lying), 'JWT signature verification failed');
  });

  it('rejects an unknown kid', async () => {
    const verifier = createJwtVerifier(cfg({ jwks: 'jwks.json' }), dir);
    const token = await sign({ tenant_id: 'x' }, rsa.privateKey, 'RS256', { kid: 'rsa-9' });
    await expectAuthError(verifier.verify(token), 'JWT signing key not found in the JWKS (unknown "kid" or key type)');
  });

  it('needs a kid when several keys match, and not when one does', async () => {
    const verifier = createJwtVerifier(cfg({ jwks: 'jwks.json' }), dir);
    const noKid = await sign({ tenant_id: 'x' }, rsa.privateKey, 'RS256');
    await expectAuthError(verifier.verify(noKid), 'JWT matches several keys in the JWKS; it needs a "kid" header');
    const ecOnly = createJwtVerifier(cfg({ jwks: 'jwks-ec.json' }), dir);
    expect((await ecOnly.verify(await sign({ tenant_id: 'ec' }, ec.privateKey, 'ES256'))).tenant).toBe('ec');
  });

  it('allows only the algorithms the JWKS keys can check', async () => {
    const ecOnly = createJwtVerifier(cfg({ jwks: 'jwks-ec.json' }), dir);
    await expectAuthError(ecOnly.verify(await sign({ tenant_id: 'x' }, rsa.privateKey, 'RS256')), 'JWT algorithm "RS256" is not allowed (allowed: ES256)');
  });

  it('verifies EdDSA tokens against a JWK published with alg "Ed25519" (RFC 9864) as well as alg "EdDSA"', async () => {
    const verifier = createJwtVerifier(cfg({ jwks: 'jwks-ed25519-alg.json' }), dir);
    expect((await verifier.verify(await sign({ tenant_id: 'new' }, ed.privateKey, 'EdDSA', { kid: 'ed-new' }))).tenant).toBe('new');
    expect((await verifier.verify(await sign({ tenant_id: 'old' }, ed2.privateKey, 'EdDSA', { kid: 'ed-old' }))).tenant).toBe('old');
    // Still the right key only: ed2's signature under ed's kid fails, and an unknown kid is still unknown.
    await expectAuthError(verifier.verify(await sign({ tenant_id: 'x' }, ed2.privateKey, 'EdDSA', { kid: 'ed-new' })), 'JWT signature verification failed');
    await expectAuthError(verifier.verify(await sign({ tenant_id: 'x' }, ed.privateKey, 'EdDSA', { kid: 'ed-zzz' })), 'JWT signing key not found in the JWKS');
    // The header alg "Ed25519" itself is not in the config enum, so it stays rejected.
    await expectAuthError(verifier.verify(await sign({ tenant_id: 'x' }, ed.privateKey, 'Ed25519', { kid: 'ed-new' })), 'JWT algorithm "Ed25519" is not allowed (allowed: EdDSA)');
  });

  it('refuses a JWKS file that holds a private key', () => {
    expect(() => createJwtVerifier(cfg({ jwks: 'jwks-private.json' }), dir)).toThrow(/jwt\.jwks .*jwks-private\.json: holds a private or secret key; it must hold public keys only/);
  });

  it('refuses a JWKS file that holds a symmetric (oct) key', () => {
    expect(() => createJwtVerifier(cfg({ jwks: 'jwks-oct.json' }), dir)).toThrow(/holds a private or secret key/);
  });

  it('refuses a JWKS file that is not JSON, not a key set, or missing', () => {
    expect(() => createJwtVerifier(cfg({ jwks: 'jwks-notjson.json' }), dir)).toThrow(/jwt\.jwks .*jwks-notjson\.json: not JSON/);
    expect(() => createJwtVerifier(cfg({ jwks: 'jwks-notaset.json' }), dir)).toThrow(/expected a JSON Web Key Set \(\{"keys": \[\.\.\.\]\}\)/);
    expect(() => createJwtVerifier(cfg({ jwks: 'missing.json' }), dir)).toThrow(/jwt\.jwks: cannot read .*missing\.json/);
  });
});

// ---------------------------------------------------------------------------------------------
// Config validation
// ---------------------------------------------------------------------------------------------

describe('createJwtVerifier: config checks', () => {
  it('throws when no configured algorithm can be verified by the configured keys', () => {
    expect(() => createJwtVerifier(cfg({ secret: SECRET, algorithms: ['RS256', 'ES256'] }), dir)).toThrow(
      'jwt.algorithms [RS256, ES256] has none that the configured keys can verify (they can verify: HS256, HS384, HS512)',
    );
    expect(() => createJwtVerifier(cfg({ publicKey: 'rsa.pem', algorithms: ['ES256', 'EdDSA', 'HS256'] }), dir)).toThrow(
      'jwt.algorithms [ES256, EdDSA, HS256] has none that the configured keys can verify (they can verify: RS256)',
    );
    expect(() => createJwtVerifier(cfg({ jwks: 'jwks-ec.json', algorithms: ['RS256'] }), dir)).toThrow('(they can verify: ES256)');
  });

  it('refuses unsupported or weak PEM keys and non-keys', () => {
    expect(() => createJwtVerifier(cfg({ publicKey: 'rsa1024.pem' }), dir)).toThrow(/RSA key has 1024 bits; RS256 needs 2048 or more/);
    expect(() => createJwtVerifier(cfg({ publicKey: 'p384.pem' }), dir)).toThrow(/EC curve secp384r1 is not supported/);
    expect(() => createJwtVerifier(cfg({ publicKey: 'not-a-key.pem' }), dir)).toThrow(/not a PEM public key/);
  });

  it('the schema needs a key and a long enough secret, and parses clockTolerance durations', () => {
    expect(jwtSchema.safeParse({}).success).toBe(false);
    expect(jwtSchema.safeParse({ secret: 'short' }).success).toBe(false);
    expect(jwtSchema.safeParse({ secret: SECRET, algorithms: ['none'] }).success).toBe(false);
    expect(cfg({ secret: SECRET, clockTolerance: '2m' }).clockTolerance).toBe(120_000);
    expect(cfg({ secret: SECRET }).tenantClaim).toBe('tenant_id');
  });
});

// ---------------------------------------------------------------------------------------------
// mintToken
// ---------------------------------------------------------------------------------------------

describe('mintToken', () => {
  it('mints an HS256 token that the verifier accepts', async () => {
    const config = cfg({ secret: SECRET });
    const token = await mintToken(config, { tenant: 'acme', ttlSeconds: 300, subject: 'alice', role: 'app_user', extra: { plan: 'pro' } });
    expect(decodeProtectedHeader(token)).toEqual({ alg: 'HS256', typ: 'JWT' });
    const { tenant, claims } = await createJwtVerifier(config, dir).verify(token);
    expect(tenant).toBe('acme');
    expect(claims).toMatchObject({ tenant_id: 'acme', sub: 'alice', role: 'app_user', plan: 'pro' });
    expect(claims.exp).toBe((claims.iat as number) + 300);
    expect(claims.iss).toBeUndefined();
    expect(claims.aud).toBeUndefined();
  });

  it('includes iss and aud when they are configured', async () => {
    const config = cfg({ secret: SECRET, issuer: 'https://issuer.example', audience: 'pgtenant' });
    const token = await mintToken(config, { tenant: 'acme', ttlSeconds: 60 });
    const { tenant, claims } = await createJwtVerifier(config, dir).verify(token);
    expect(tenant).toBe('acme');
    expect(claims.iss).toBe('https://issuer.example');
    expect(claims.aud).toBe('pgtenant');
  });

  it('puts the tenant at a nested tenantClaim path, merged with extra claims', async () => {
    const config = cfg({ secret: SECRET, tenantClaim: 'app_metadata.tenant' });
    const token = await mintToken(config, { tenant: 'nested-co', ttlSeconds: 60, extra: { app_metadata: { plan: 'pro' } } });
    const { tenant, claims } = await createJwtVerifier(config, dir).verify(token);
    expect(tenant).toBe('nested-co');
    expect(claims.app_metadata).toEqual({ plan: 'pro', tenant: 'nested-co' });
    await expect(mintToken(config, { tenant: 'x', ttlSeconds: 60, extra: { app_metadata: 'flat' } })).rejects.toThrow(/"app_metadata" is already set to a non-object/);
  });

  it('round-trips an Auth0-style tenantClaim', async () => {
    const config = cfg({ secret: SECRET, tenantClaim: 'https://example.com/tenant' });
    const token = await mintToken(config, { tenant: 'globex', ttlSeconds: 60 });
    expect((await createJwtVerifier(config, dir).verify(token)).tenant).toBe('globex');
    // The namespaced name is one claim, as Auth0 and its readers have it, not nested at its dots.
    expect(decodeJwt(token)['https://example.com/tenant']).toBe('globex');
    const nested = cfg({ secret: SECRET, tenantClaim: 'https://example.com/app.tenant' });
    const nestedToken = await mintToken(nested, { tenant: 'initech', ttlSeconds: 60 });
    expect(decodeJwt(nestedToken)['https://example.com/app']).toEqual({ tenant: 'initech' });
    expect((await createJwtVerifier(nested, dir).verify(nestedToken)).tenant).toBe('initech');
  });

  it('mints tokens that a verifier with the same secret but a public key too accepts', async () => {
    const token = await mintToken(cfg({ secret: SECRET }), { tenant: 'acme', ttlSeconds: 60 });
    expect((await createJwtVerifier(cfg({ secret: SECRET, publicKey: 'rsa.pem' }), dir).verify(token)).tenant).toBe('acme');
    await expectAuthError(createJwtVerifier(cfg({ secret: OTHER_SECRET }), dir).verify(token), 'JWT signature verification failed');
  });

  it('refuses without a secret, without HS256, with a bad lifetime or an empty tenant', async () => {
    await expect(mintToken(cfg({ publicKey: 'rsa.pem' }), { tenant: 'acme', ttlSeconds: 60 })).rejects.toThrow('jwt.secret is required to mint tokens');
    await expect(mintToken(cfg({ secret: SECRET, algorithms: ['HS512'] }), { tenant: 'acme', ttlSeconds: 60 })).rejects.toThrow('does not allow HS256');
    await expect(mintToken(cfg({ secret: SECRET }), { tenant: 'acme', ttlSeconds: 0 })).rejects.toThrow('token lifetime must be a positive number of seconds');
    await expect(mintToken(cfg({ secret: SECRET }), { tenant: 'acme', ttlSeconds: Number.NaN })).rejects.toThrow('token lifetime must be a positive number of seconds');
    await expect(mintToken(cfg({ secret: SECRET }), { tenant: '', ttlSeconds: 60 })).rejects.toThrow('tenant must not be empty');
  });

  it('does not let extra claims override exp', async () => {
    const config = cfg({ secret: SECRET });
    const token = await mintToken(config, { tenant: 'acme', ttlSeconds: 60, extra: { exp: now() + 10 * 365 * 86400 } });
    const { claims } = await createJwtVerifier(config, dir).verify(token);
    expect(claims.exp).toBe((claims.iat as number) + 60);
  });
});

