import { AuthRequest, Backend, Frontend, StartupCode, Target } from './codes.js';

/** Builds one typed message: `msg(type).str(..).i32(..).done()`. Sizes are computed up front, so one allocation. */
class MessageBuilder {
  private parts: (Buffer | number)[] = [];
  private size = 0;
  constructor(private readonly type: number | null) {}
  str(s: string): this {
    const b = Buffer.from(s, 'utf8');
    this.parts.push(b, -1);
    this.size += b.length + 1;
    return this;
  }
  bytes(b: Buffer): this {
    this.parts.push(b);
    this.size += b.length;
    return this;
  }
  i32(n: number): this {
    const b = Buffer.allocUnsafe(4);
    b.writeInt32BE(n, 0);
    return this.bytes(b);
  }
  i16(n: number): this {
    const b = Buffer.allocUnsafe(2);
    b.writeInt16BE(n, 0);
    return this.bytes(b);
  }
  byte(n: number): this {
    this.parts.push(-2 - n);
    this.size += 1;
    return this;
  }
  done(): Buffer {
    const head = this.type === null ? 4 : 5;
    const out = Buffer.allocUnsafe(head + this.size);
    let o = 0;
    if (this.type !== null) out[o++] = this.type;
    out.writeInt32BE(4 + this.size, o);
    o += 4;
    for (const p of this.parts) {
      if (typeof p === 'number') out[o++] = p === -1 ? 0 : -2 - p;
      else o += p.copy(out, o);
    }
    return out;
  }
}

export const msg = (type: number): MessageBuilder => new MessageBuilder(type);
const untyped = (): MessageBuilder => new MessageBuilder(null);

// ---- backend messages the proxy itself sends to clients ----

export const authenticationOk = (): Buffer => msg(Backend.Authentication).i32(AuthRequest.Ok).done();
export const authenticationCleartext = (): Buffer => msg(Backend.Authentication).i32(AuthRequest.CleartextPassword).done();
export const authenticationMd5 = (salt: Buffer): Buffer => msg(Backend.Authentication).i32(AuthRequest.MD5Password).bytes(salt).done();
export const authenticationSasl = (mechanisms: string[]): Buffer => {
  const m = msg(Backend.Authentication).i32(AuthRequest.SASL);
  for (const mech of mechanisms) m.str(mech);
  return m.byte(0).done();
};
export const authenticationSaslContinue = (data: string): Buffer =>
  msg(Backend.Authentication).i32(AuthRequest.SASLContinue).bytes(Buffer.from(data, 'utf8')).done();
export const authenticationSaslFinal = (data: string): Buffer =>
  msg(Backend.Authentication).i32(AuthRequest.SASLFinal).bytes(Buffer.from(data, 'utf8')).done();

export const parameterStatus = (name: string, value: string): Buffer => msg(Backend.ParameterStatus).str(name).str(value).done();
export const backendKeyData = (pid: number, secret: number): Buffer => msg(Backend.BackendKeyData).i32(pid).i32(secret).done();
export const readyForQuery = (status: number): Buffer => msg(Backend.ReadyForQuery).byte(status).done();
export const commandComplete = (tag: string): Buffer => msg(Backend.CommandComplete).str(tag).done();
export const negotiateProtocolVersion = (minor: number, unsupported: string[]): Buffer => {
  const m = msg(Backend.NegotiateProtocolVersion).i32(minor).i32(unsupported.length);
  for (const o of unsupported) m.str(o);
  return m.done();
};

export const PARSE_COMPLETE: Buffer = msg(Backend.ParseComplete).done();
export const CLOSE_COMPLETE: Buffer = msg(Backend.CloseComplete).done();

export interface ErrorFields {
  severity: 'ERROR' | 'FATAL' | 'NOTICE' | 'WARNING';
  code: string;
  message: string;
  detail?: string;
  hint?: string;
}

function fieldsMessage(type: number, f: ErrorFields): Buffer {
  const m = msg(type).byte(0x53).str(f.severity).byte(0x56).str(f.severity).byte(0x43).str(f.code).byte(0x4d).str(f.message);
  if (f.detail) m.byte(0x44).str(f.detail);
  if (f.hint) m.byte(0x48).str(f.hint);
  return m.byte(0).done();
}

export const errorResponse = (f: ErrorFields): Buffer => fieldsMessage(Backend.ErrorResponse, f);
export const noticeResponse = (f: ErrorFields): Buffer => fieldsMessage(Backend.NoticeResponse, f);

// ---- frontend messages the proxy sends to servers ----

export const startupMessage = (params: Record<string, string>): Buffer => {
  const m = untyped().i32(StartupCode.Protocol3);
  for (const [k, v] of Object.entries(params)) m.str(k).str(v);
  return m.byte(0).done();
};
export const sslRequest = (): Buffer => untyped().i32(StartupCode.SSLRequest).done();
export const cancelRequest = (pid: number, secret: number): Buffer => untyped().i32(StartupCode.CancelRequest).i32(pid).i32(secret).done();
export const passwordMessage = (password: string): Buffer => msg(Frontend.Password).str(password).done();
export const saslInitialResponse = (mechanism: string, data: string): Buffer => {
  const payload = Buffer.from(data, 'utf8');
  return msg(Frontend.Password).str(mechanism).i32(payload.length).bytes(payload).done();
};
export const saslResponse = (data: string): Buffer => msg(Frontend.Password).bytes(Buffer.from(data, 'utf8')).done();
export const query = (sql: string): Buffer => msg(Frontend.Query).str(sql).done();
export const closeStatement = (name: string): Buffer => msg(Frontend.Close).byte(Target.Statement).str(name).done();
export const SYNC: Buffer = msg(Frontend.Sync).done();
export const TERMINATE: Buffer = msg(Frontend.Terminate).done();
