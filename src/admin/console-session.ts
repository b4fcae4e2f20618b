/**
 * One client of the admin console (database `pgtenant`): simple queries only, each answered in
 * order with the command's result and ReadyForQuery.
 */
import { Frontend, TxStatus } from '../protocol/codes.js';
import { errorResponse, readyForQuery } from '../protocol/messages.js';
import { SqlState } from '../protocol/sqlstate.js';
import { runAdminCommand, type AdminTarget } from './console.js';

/** What the admin console reports at login. */
export const ADMIN_PARAMS = new Map([
  ['server_version', '15.0 (pgtenant admin)'],
  ['server_encoding', 'UTF8'],
  ['client_encoding', 'UTF8'],
  ['DateStyle', 'ISO, MDY'],
  ['integer_datetimes', 'on'],
  ['standard_conforming_strings', 'on'],
]);

export class AdminConsoleSession {
  private queue: Promise<void> = Promise.resolve();

  constructor(
    private readonly target: AdminTarget,
    private readonly send: (message: Buffer) => void,
    private readonly closed: () => boolean,
  ) {}

  /** One client message (not Terminate, which the session handles). */
  message(type: number, buf: Buffer, start: number, end: number): void {
    if (type === Frontend.Query) {
      const text = buf.toString('utf8', start + 5, end - 1);
      this.queue = this.queue.then(async () => {
        const answer = await runAdminCommand(this.target, text);
        if (this.closed()) return;
        for (const m of answer) this.send(m);
        this.send(readyForQuery(TxStatus.Idle));
      });
      return;
    }
    if (type === Frontend.Sync) {
      this.queue = this.queue.then(() => this.send(readyForQuery(TxStatus.Idle)));
      return;
    }
    this.queue = this.queue.then(() =>
      this.send(errorResponse({ severity: 'ERROR', code: SqlState.FeatureNotSupported, message: 'the admin console takes simple queries only (psql, or node-postgres without parameters)' })),
    );
  }
}
