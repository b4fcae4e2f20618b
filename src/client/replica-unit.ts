import { TxStatus } from '../protocol/codes.js';
import type { ReadTarget } from '../routing/router.js';
import { endsInReadyForQuery } from './units.js';

/**
 * The replica the client's current unit runs on (none: the primary). Each unit is counted on the
 * replica once when it starts and once when it ends, ends early or fails, so that the replica's
 * units in flight, which weigh its routing cost, come back to zero.
 */
export class ReplicaUnit {
  private target: ReadTarget | null = null;
  /**
   * A request of a transaction on the replica that ends in ReadyForQuery went out: what the client
   * sends next waits for that answer, since it may come after the transaction's end (a write
   * pipelined after COMMIT belongs on the primary).
   */
  private requestOut = false;

  get active(): boolean {
    return this.target !== null;
  }

  /** The client's next messages wait: autocommit reads are routed batch by batch, a transaction's requests one at a time. */
  get holdsMessages(): boolean {
    return this.target !== null && (this.target.autocommit || this.requestOut);
  }

  /** Whether the answer with `status` ends the client's use of the replica (what it sent meanwhile is routed anew). */
  done(status: number): boolean {
    return this.target !== null && (this.target.autocommit || status === TxStatus.Idle);
  }

  use(target: ReadTarget | null): void {
    this.target = target;
    this.requestOut = false;
  }

  sent(type: number): void {
    if (this.target !== null && endsInReadyForQuery(type)) this.requestOut = true;
  }

  /** The client's request was answered (ReadyForQuery). */
  answered(): void {
    this.requestOut = false;
  }

  unitStarted(): void {
    if (this.target !== null) this.target.router.set.started(this.target.state);
  }

  /** The unit ended after `ms`; `failed`: its connection was lost. */
  unitEnded(ms: number, failed: boolean): void {
    if (this.target !== null) this.target.router.set.finished(this.target.state, ms, failed);
  }
}
