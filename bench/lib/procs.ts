/**
 * Child processes of the benchmark and their cleanup. Every process the bench starts (pgbench,
 * pgbouncer, pgtenant) goes through spawnTracked(); other resources (the embedded Postgres, temp
 * dirs) register an async cleanup and, where possible, a synchronous last resort for a hard exit.
 */
import { spawn, type ChildProcess, type SpawnOptions } from 'node:child_process';
import { connect } from 'node:net';
import path from 'node:path';
import { setTimeout as delay } from 'node:timers/promises';

export { freePort } from '../../test/harness/ports.js';

const children = new Set<ChildProcess>();
const cleanups: { name: string; run: () => Promise<void> }[] = [];
const lastResorts: (() => void)[] = [];
let cleaning: Promise<void> | undefined;

/** Set once cleanup has begun (signal or end of run): no new children may start. */
export function stopping(): boolean {
  return cleaning !== undefined;
}

/** Register an async cleanup; they run in reverse order of registration. */
export function onCleanup(name: string, run: () => Promise<void>): void {
  cleanups.push({ name, run });
}

/** Register a synchronous step for process 'exit' (e.g. kill a pid read from a pid file). */
export function onHardExit(fn: () => void): void {
  lastResorts.push(fn);
}

export function spawnTracked(cmd: string, args: string[], opts: SpawnOptions = {}): ChildProcess {
  if (stopping()) throw new Error(`not starting ${path.basename(cmd)}: the benchmark is stopping`);
  const child = spawn(cmd, args, { stdio: ['ignore', 'pipe', 'pipe'], ...opts });
  children.add(child);
  child.on('exit', () => children.delete(child));
  child.on('error', () => children.delete(child));
  return child;
}

/** Stop a child: SIGTERM, then SIGKILL after graceMs. Resolves when it has exited. */
export async function stopChild(child: ChildProcess, graceMs = 3000): Promise<void> {
  if (child.exitCode !== null || child.signalCode !== null || child.pid === undefined) return;
  const exited = new Promise<void>((resolve) => child.once('exit', () => resolve()));
  child.kill('SIGTERM');
  const outcome = await Promise.race([exited.then(() => 'exited' as const), delay(graceMs, 'timeout' as const, { ref: false })]);
  if (outcome === 'timeout') {
    child.kill('SIGKILL');
    await exited;
  }
}

export interface RunOutput {
  code: number | null;
  out: string;
}

/** Run a command to completion, collecting stdout and stderr together. */
export function run(cmd: string, args: string[], opts: SpawnOptions = {}): Promise<RunOutput> {
  return new Promise((resolve, reject) => {
    const child = spawnTracked(cmd, args, opts);
    let out = '';
    child.stdout?.on('data', (d: Buffer) => (out += d.toString()));
    child.stderr?.on('data', (d: Buffer) => (out += d.toString()));
    child.once('error', reject);
    child.once('close', (code) => resolve({ code, out }));
  });
}

/** Keep the last lines a child wrote, for error messages. */
export function captureTail(child: ChildProcess, lines = 40): () => string {
  const tail: string[] = [];
  const take = (d: Buffer): void => {
    for (const line of d.toString().split('\n')) {
      if (line.trim() === '') continue;
      tail.push(line);
      if (tail.length > lines) tail.shift();
    }
  };
  child.stdout?.on('data', take);
  child.stderr?.on('data', take);
  return () => tail.join('\n');
}

/** Wait until host:port accepts TCP connections; fail early if `child` exits first. */
export async function waitForPort(port: number, what: string, child?: ChildProcess, timeoutMs = 30_000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    if (child !== undefined && (child.exitCode !== null || child.signalCode !== null)) {
      throw new Error(`${what} exited (code ${child.exitCode}, signal ${child.signalCode}) before listening on port ${port}`);
    }
    const ok = await new Promise<boolean>((resolve) => {
      const socket = connect({ host: '127.0.0.1', port });
      socket.once('connect', () => {
        socket.destroy();
        resolve(true);
      });
      socket.once('error', () => resolve(false));
    });
    if (ok) return;
    if (Date.now() > deadline) throw new Error(`${what} did not listen on port ${port} within ${timeoutMs / 1000} s`);
    await delay(100);
  }
}

/** Waits until a server child listens on `port`; if it never does, stops it and fails with its last output. */
export async function untilListening(child: ChildProcess, port: number, what: string): Promise<void> {
  const tail = captureTail(child);
  try {
    await waitForPort(port, what, child);
  } catch (err) {
    await stopChild(child);
    throw new Error(`${(err as Error).message}\n${tail()}`);
  }
}

/** Stop every tracked child and run the registered cleanups (once). */
export function cleanupAll(): Promise<void> {
  cleaning ??= (async () => {
    await Promise.all([...children].map((c) => stopChild(c)));
    for (const { name, run: fn } of cleanups.reverse()) {
      try {
        await fn();
      } catch (err) {
        console.error(`cleanup of ${name} failed: ${(err as Error).message}`);
      }
    }
  })();
  return cleaning;
}

/** On SIGINT/SIGTERM/SIGHUP clean up and exit; on any exit SIGKILL whatever is left. */
export function installExitHandlers(): void {
  for (const sig of ['SIGINT', 'SIGTERM', 'SIGHUP'] as const) {
    process.once(sig, () => {
      console.error(`\n${sig}: stopping child processes and the embedded Postgres…`);
      const hard = setTimeout(() => process.exit(130), 15_000);
      hard.unref();
      cleanupAll().finally(() => process.exit(130));
    });
  }
  process.once('exit', () => {
    for (const child of children) child.kill('SIGKILL');
    for (const fn of lastResorts) {
      try {
        fn();
      } catch {
        // best effort on the way out
      }
    }
  });
}
