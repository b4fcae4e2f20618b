import { createServer } from 'node:net';

/**
 * A port that was free a moment ago: the OS picks it for a listener on port 0,
 * which is then closed. Another process could grab it in between; callers
 * bind it right away to keep that window small.
 */
export function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const server = createServer();
    server.once('error', reject);
    server.listen(0, '127.0.0.1', () => {
      const address = server.address();
      if (address === null || typeof address === 'string') {
        server.close();
        reject(new Error(`unexpected listener address: ${String(address)}`));
        return;
      }
      server.close((err) => (err ? reject(err) : resolve(address.port)));
    });
  });
}
