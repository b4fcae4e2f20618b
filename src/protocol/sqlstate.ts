/** SQLSTATE codes pgtenant sends; one place so every error carries a real code. */
export const SqlState = {
  ProtocolViolation: '08P01',
  ConnectionFailure: '08006',
  ConnectionUnableToConnect: '08001',
  InvalidAuthorizationSpecification: '28000',
  InvalidPassword: '28P01',
  TooManyConnections: '53300',
  QueryCanceled: '57014',
  AdminShutdown: '57P01',
  CannotConnectNow: '57P03',
  FeatureNotSupported: '0A000',
  InsufficientPrivilege: '42501',
  SyntaxError: '42601',
  InvalidParameterValue: '22023',
  InternalError: 'XX000',
} as const;

export type SqlStateCode = (typeof SqlState)[keyof typeof SqlState];

/** An error meant for the client: becomes an ErrorResponse with this SQLSTATE. */
export class PgError extends Error {
  constructor(
    readonly code: string,
    message: string,
    readonly severity: 'ERROR' | 'FATAL' = 'ERROR',
    readonly detail?: string,
    readonly hint?: string,
  ) {
    super(message);
    this.name = 'PgError';
  }
}
