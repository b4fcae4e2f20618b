import { loadModule } from 'libpg-query';

let parserLoaded: Promise<void> | undefined;

/** Loads libpg-query's WASM parser once per process, for everything that parses statements. */
export function loadParser(): Promise<void> {
  parserLoaded ??= loadModule().catch((err: unknown) => {
    parserLoaded = undefined; // let a later call retry
    throw err;
  });
  return parserLoaded;
}
