import type { Socket } from 'node:net';
import { AuthRequest, Backend } from '../protocol/codes.js';
import { passwordMessage, saslInitialResponse, saslResponse } from '../protocol/messages.js';
import { cstringEnd, parseErrorFields, readCString } from '../protocol/read.js';
import { PgError, SqlState } from '../protocol/sqlstate.js';
import { md5Response } from '../auth/md5.js';
import { SCRAM_MECHANISM, ScramClientSession } from '../auth/scram.js';

export interface BackendLogin {
  pid: number;
  secret: number;
  params: Map<string, string>;
  /** Bytes that arrived after ReadyForQuery. */
  rest: Buffer;
}

interface Credentials {
  host: string;
  port: number;
  user: string;
  password?: string;
}

/** Answers the server's authentication requests until the first ReadyForQuery. */
export function authenticateToBackend(socket: Socket, ep: Credentials, deadline: number): Promise<BackendLogin> {
  return new Promise((resolve, reject) => {
    const params = new Map<string, string>();
    let pid = 0;
    let secret = 0;
    let scram: ScramClientSession | null = null;
    let buffered: Buffer = Buffer.alloc(0);
    const where = `server ${ep.host}:${ep.port}`;

    const timer = setTimeout(() => fail(new PgError(SqlState.ConnectionUnableToConnect, `${where} did not finish authentication in time`)), Math.max(0, deadline - Date.now()));
    const fail = (err: PgError): void => {
      cleanup();
      reject(err);
    };
    const cleanup = (): void => {
      clearTimeout(timer);
      socket.off('data', onData);
      socket.off('close', onClose);
    };
    const onClose = (): void => fail(new PgError(SqlState.ConnectionFailure, `${where} closed the connection during login`));
    const needPassword = (): string => {
      if (ep.password === undefined) {
        throw new PgError(SqlState.InvalidPassword, `${where} asks a password for user "${ep.user}" but none is configured (set backends.<name>.password or a plaintext users.<name>.password)`);
      }
      return ep.password;
    };

    const handle = (type: number, body: Buffer): boolean => {
      switch (type) {
        case Backend.Authentication: {
          const code = body.readInt32BE(0);
          if (code === AuthRequest.Ok) return false;
          if (code === AuthRequest.CleartextPassword) socket.write(passwordMessage(needPassword()));
          else if (code === AuthRequest.MD5Password) socket.write(passwordMessage(md5Response(needPassword(), ep.user, body.subarray(4, 8))));
          else if (code === AuthRequest.SASL) {
            const mechanisms = body.toString('utf8', 4).split('\0');
            if (!mechanisms.includes(SCRAM_MECHANISM)) throw new PgError(SqlState.FeatureNotSupported, `${where} offers SASL mechanisms ${mechanisms.filter(Boolean).join(', ')}; only ${SCRAM_MECHANISM} is supported`);
            scram = new ScramClientSession(needPassword());
            socket.write(saslInitialResponse(SCRAM_MECHANISM, scram.clientFirst()));
          } else if (code === AuthRequest.SASLContinue && scram) socket.write(saslResponse(scram.clientFinal(body.toString('utf8', 4))));
          else if (code === AuthRequest.SASLFinal && scram) scram.verifyServerFinal(body.toString('utf8', 4));
          else throw new PgError(SqlState.FeatureNotSupported, `${where} asks for authentication method ${code}, which pgtenant does not support`);
          return false;
        }
        case Backend.ParameterStatus: {
          const nameEnd = cstringEnd(body, 0, body.length);
          if (nameEnd !== -1) params.set(body.toString('utf8', 0, nameEnd - 1), readCString(body, nameEnd, body.length) ?? '');
          return false;
        }
        case Backend.BackendKeyData:
          pid = body.readInt32BE(0);
          secret = body.readInt32BE(4);
          return false;
        case Backend.ErrorResponse: {
          const f = parseErrorFields(body, 0, body.length);
          throw new PgError(f.get('C') ?? SqlState.ConnectionFailure, `${where}: ${f.get('M') ?? 'login failed'}`, 'FATAL');
        }
        case Backend.ReadyForQuery:
          return true;
        default:
          return false; // NoticeResponse, NegotiateProtocolVersion: nothing to decide
      }
    };

    const onData = (chunk: Buffer): void => {
      buffered = buffered.length === 0 ? chunk : Buffer.concat([buffered, chunk]);
      try {
        let off = 0;
        while (buffered.length - off >= 5) {
          const len = buffered.readInt32BE(off + 1);
          if (buffered.length - off < len + 1) break;
          const type = buffered[off];
          const done = handle(type, buffered.subarray(off + 5, off + 1 + len));
          off += len + 1;
          if (done) {
            cleanup();
            resolve({ pid, secret, params, rest: buffered.subarray(off) });
            return;
          }
        }
        buffered = buffered.subarray(off);
      } catch (err) {
        fail(err instanceof PgError ? err : new PgError(SqlState.InvalidPassword, `${where}: ${(err as Error).message}`, 'FATAL'));
      }
    };
    socket.on('data', onData);
    socket.once('close', onClose);
  });
}
