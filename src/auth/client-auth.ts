import { randomBytes } from 'node:crypto';
import type { UserConfig } from '../config/schema.js';
import { authenticationCleartext, authenticationMd5, authenticationSasl, authenticationSaslContinue, authenticationSaslFinal } from '../protocol/messages.js';
import { cstringEnd } from '../protocol/read.js';
import { PgError, SqlState } from '../protocol/sqlstate.js';
import { verifyMd5Response } from './md5.js';
import { makeScramVerifier, parseScramVerifier, SCRAM_MECHANISM, ScramServerSession, type ScramVerifier } from './scram.js';

export type AuthMethod = 'scram-sha-256' | 'md5' | 'cleartext' | 'trust' | 'jwt';

/** What to do after a client message: send a request and wait, or the exchange is over. */
export type AuthStep =
  | { kind: 'send'; message: Buffer }
  /** `final` (SCRAM's SASLFinal) goes out just before AuthenticationOk; `password` is the cleartext one the client sent. */
  | { kind: 'ok'; final?: Buffer; password?: string }
  | { kind: 'fail'; error: PgError };

export function authMethodOf(user: UserConfig): AuthMethod {
  return user.auth ?? (user.password === undefined ? 'trust' : 'scram-sha-256');
}

/** Derived SCRAM verifiers of plaintext passwords: PBKDF2 costs milliseconds, logins should not. */
const verifierCache = new Map<string, ScramVerifier>();

function verifierFor(password: string): ScramVerifier | undefined {
  if (password.startsWith('SCRAM-SHA-256$')) return parseScramVerifier(password);
  if (/^md5[0-9a-f]{32}$/.test(password)) return undefined;
  let v = verifierCache.get(password);
  if (v === undefined) {
    v = makeScramVerifier(password);
    verifierCache.set(password, v);
  }
  return v;
}

const failed = (user: string): PgError => new PgError(SqlState.InvalidPassword, `password authentication failed for user "${user}"`, 'FATAL');

/**
 * The server side of a client's login: one request out, one answer in, until ok or fail.
 * A user not in the config goes through the same exchange and fails, so names cannot be probed.
 */
export class ClientAuthenticator {
  private scram: ScramServerSession | null = null;
  private readonly salt = randomBytes(4);
  readonly method: AuthMethod;

  constructor(
    private readonly user: string,
    private readonly config: UserConfig | undefined,
    private readonly secureTransport: boolean,
    private readonly allowCleartextWithoutTls: boolean,
  ) {
    this.method = config ? authMethodOf(config) : 'scram-sha-256';
  }

  start(): AuthStep {
    switch (this.method) {
      case 'trust':
        return { kind: 'ok' };
      case 'cleartext':
      case 'jwt':
        if (!this.secureTransport && !this.allowCleartextWithoutTls) {
          const what = this.method === 'jwt' ? 'a JWT as password' : 'cleartext passwords';
          return { kind: 'fail', error: new PgError(SqlState.InvalidAuthorizationSpecification, `user "${this.user}" logs in with ${what}, which pgtenant accepts only over TLS or loopback`, 'FATAL', undefined, 'connect with sslmode=require, or set listen.allowCleartextWithoutTls: true') };
        }
        return { kind: 'send', message: authenticationCleartext() };
      case 'md5':
        return { kind: 'send', message: authenticationMd5(this.salt) };
      case 'scram-sha-256':
        return { kind: 'send', message: authenticationSasl([SCRAM_MECHANISM]) };
    }
  }

  /** `body` is a PasswordMessage/SASLInitialResponse/SASLResponse body (after type and length). */
  next(body: Buffer): AuthStep {
    const password = this.config?.password;
    switch (this.method) {
      case 'cleartext': {
        const end = cstringEnd(body, 0, body.length);
        const given = body.toString('utf8', 0, end === -1 ? body.length : end - 1);
        return this.config && password === given ? { kind: 'ok', password: given } : { kind: 'fail', error: failed(this.user) };
      }
      case 'jwt': {
        // The token is verified by the tenant resolver, which also reads its claims.
        const end = cstringEnd(body, 0, body.length);
        const token = body.toString('utf8', 0, end === -1 ? body.length : end - 1);
        return this.config ? { kind: 'ok', password: token } : { kind: 'fail', error: failed(this.user) };
      }
      case 'md5': {
        const end = cstringEnd(body, 0, body.length);
        const response = body.toString('utf8', 0, end === -1 ? body.length : end - 1);
        if (!this.config || password === undefined) return { kind: 'fail', error: failed(this.user) };
        return verifyMd5Response(password, this.user, this.salt, response) ? { kind: 'ok' } : { kind: 'fail', error: failed(this.user) };
      }
      case 'scram-sha-256':
        return this.scramStep(body, password);
      case 'trust':
        return { kind: 'ok' };
    }
  }

  private scramStep(body: Buffer, password: string | undefined): AuthStep {
    if (this.scram === null) {
      // SASLInitialResponse: mechanism name, then an int32 length and the client-first-message.
      const mechEnd = cstringEnd(body, 0, body.length);
      if (mechEnd === -1 || body.length < mechEnd + 4) return { kind: 'fail', error: new PgError(SqlState.ProtocolViolation, 'malformed SASLInitialResponse', 'FATAL') };
      const mechanism = body.toString('utf8', 0, mechEnd - 1);
      if (mechanism !== SCRAM_MECHANISM) return { kind: 'fail', error: new PgError(SqlState.ProtocolViolation, `SASL mechanism ${mechanism} is not supported; use ${SCRAM_MECHANISM}`, 'FATAL') };
      const verifier = this.config && password !== undefined ? verifierFor(password) : undefined;
      // Unknown users still get a full exchange against a throwaway verifier.
      this.scram = new ScramServerSession(verifier ?? makeScramVerifier(randomBytes(16).toString('hex'), randomBytes(16), 4096));
      const r = this.scram.handleClientFirst(body.toString('utf8', mechEnd + 4));
      if (!r.ok) return { kind: 'fail', error: new PgError(SqlState.InvalidPassword, `SCRAM authentication failed for user "${this.user}": ${r.reason}`, 'FATAL') };
      return { kind: 'send', message: authenticationSaslContinue(r.serverFirst) };
    }
    const r = this.scram.handleClientFinal(body.toString('utf8'));
    if (!r.ok || !this.config || password === undefined || verifierFor(password) === undefined) return { kind: 'fail', error: failed(this.user) };
    return { kind: 'ok', final: authenticationSaslFinal(r.serverFinal) };
  }
}
