/**
 * From a client's startup packet to who it is: the login request checked against the
 * configuration, password/SCRAM or JWT authentication, and the tenant the client binds to.
 */
import { ClientAuthenticator, type AuthStep } from '../auth/client-auth.js';
import { ADMIN_DATABASE } from '../admin/console.js';
import { negotiateProtocolVersion } from '../protocol/messages.js';
import { PgError, SqlState } from '../protocol/sqlstate.js';
import type { TenantContext } from '../tenancy/tenancy.js';
import { readLoginRequest } from './login-request.js';
import type { SessionHost } from './session-host.js';

/** What the login needs of the client session it runs for. */
export interface LoginSession {
  user: string;
  database: string;
  settings: Map<string, string>;
  readonly closed: boolean;
  readonly encrypted: boolean;
  readonly remoteAddress: string;
  readonly serverName: string | undefined;
  send(buf: Buffer): void;
  fail(err: PgError): void;
  /** The client proved who it is; a JWT may still be being verified. */
  authenticated(): void;
  /** Authentication succeeded: `admin` for the admin console, else the tenant bound (null: none). */
  loggedIn(target: { admin: true } | { admin: false; tenant: TenantContext | null }): void;
}

export class ClientLogin {
  private auth: ClientAuthenticator | null = null;
  private clues: { userTenant?: string; optionsTenant?: string; jwtTenant?: string; claims?: Record<string, unknown> } = {};

  constructor(
    private readonly session: LoginSession,
    private readonly host: SessionHost,
  ) {}

  /** Checks the startup packet and sends the first authentication request. Throws a FATAL PgError when the login cannot go on. */
  start(minor: number, params: Map<string, string>, protocolOptions: string[]): void {
    const session = this.session;
    const host = this.host;
    if (minor > 0 || protocolOptions.length > 0) session.send(negotiateProtocolVersion(0, protocolOptions));
    const cfg = host.config;
    const request = readLoginRequest(params, cfg, host.tenancy, ADMIN_DATABASE);
    if (host.draining) throw new PgError(SqlState.CannotConnectNow, 'pgtenant is shutting down', 'FATAL');
    session.user = request.user;
    session.database = request.database;
    session.settings = request.settings;
    this.clues = { userTenant: request.userTenant, optionsTenant: request.optionsTenant };
    const address = session.remoteAddress;
    const loopback = address.startsWith('127.') || address === '::1' || address === '::ffff:127.0.0.1';
    this.auth = new ClientAuthenticator(request.user, cfg.users[request.user], session.encrypted || loopback, cfg.listen.allowCleartextWithoutTls);
    this.step(this.auth.start());
  }

  /** The client's answer to an authentication request (a PasswordMessage body). */
  password(body: Buffer): void {
    if (this.auth === null) throw new PgError(SqlState.ProtocolViolation, 'unexpected password message', 'FATAL');
    this.step(this.auth.next(body));
  }

  private step(step: AuthStep): void {
    const user = this.session.user;
    if (step.kind === 'fail') {
      this.host.log.info({ user, code: step.error.code }, step.error.message);
      this.host.audit('auth_failed', { user, address: this.session.remoteAddress, code: step.error.code, reason: step.error.message });
      throw step.error;
    }
    if (step.kind === 'send') {
      this.session.send(step.message);
      return;
    }
    if (step.final) this.session.send(step.final);
    this.session.authenticated();
    if (this.host.config.users[user]?.auth === 'jwt') this.verifyJwt(step.password ?? '');
    else this.bind();
  }

  private verifyJwt(token: string): void {
    const verifier = this.host.jwtVerifier;
    const user = this.session.user;
    if (verifier === null) throw new PgError(SqlState.InvalidAuthorizationSpecification, `user "${user}" logs in with a JWT but no jwt section is configured`, 'FATAL');
    verifier.verify(token).then(
      ({ tenant, claims }) => {
        if (this.session.closed) return;
        this.clues.jwtTenant = tenant;
        this.clues.claims = claims;
        try {
          this.bind();
        } catch (err) {
          this.session.fail(err instanceof PgError ? err : new PgError(SqlState.InternalError, String(err), 'FATAL'));
        }
      },
      (err: unknown) => {
        const e = err instanceof PgError ? err : new PgError(SqlState.InvalidPassword, `JWT verification failed: ${String(err)}`, 'FATAL');
        this.host.log.info({ user, code: e.code }, e.message);
        this.host.audit('auth_failed', { user, address: this.session.remoteAddress, code: e.code, reason: e.message });
        this.session.fail(e);
      },
    );
  }

  /** Authenticated: the admin console, or the tenant this client binds to (none for exempt users and proxies without tenancy). */
  private bind(): void {
    const { user, database } = this.session;
    if (database === ADMIN_DATABASE) {
      if (!this.host.config.admin.users.includes(user)) {
        throw new PgError(SqlState.InvalidAuthorizationSpecification, `user "${user}" may not open the admin console`, 'FATAL', undefined, 'add the user to admin.users');
      }
      this.session.loggedIn({ admin: true });
      return;
    }
    const tenancy = this.host.tenancy;
    if (tenancy === null || this.host.config.users[user]?.tenancy === 'exempt') {
      this.session.loggedIn({ admin: false, tenant: null });
      return;
    }
    this.session.loggedIn({ admin: false, tenant: tenancy.contextFor({ ...this.clues, database, serverName: this.session.serverName }) });
  }
}
