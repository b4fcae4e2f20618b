/**
 * The floor for any proxy written on Node.js `net`: a bare TCP pipe, one server connection per
 * client, bytes passed on as they arrive with no protocol work and no pooling, in a process of
 * its own like pgtenant. Its latency is what a Node.js proxy cannot go below.
 */
import { freePort, spawnTracked, stopChild, untilListening } from './procs.js';

const PIPE = `
const net = require('node:net');
const [port, backendPort] = process.argv.slice(1, 3).map(Number);
const socketDir = process.argv[3];
net.createServer((client) => {
  const server = socketDir ? net.connect(socketDir + '/.s.PGSQL.' + backendPort) : net.connect(backendPort, '127.0.0.1');
  client.setNoDelay(true);
  server.setNoDelay(true);
  client.on('data', (d) => server.write(d));
  server.on('data', (d) => client.write(d));
  client.on('close', () => server.destroy());
  server.on('close', () => client.destroy());
  client.on('error', () => {});
  server.on('error', () => {});
}).listen(port, '127.0.0.1');
`;

export interface RunningNodePipe {
  port: number;
  pid: number | undefined;
  stop(): Promise<void>;
}

/** `socketDir`: reach the server through its Unix-domain socket instead of TCP. */
export async function startNodePipe(backendPort: number, socketDir?: string): Promise<RunningNodePipe> {
  const port = await freePort();
  const child = spawnTracked(process.execPath, ['-e', PIPE, String(port), String(backendPort), ...(socketDir === undefined ? [] : [socketDir])]);
  await untilListening(child, port, 'node-pipe');
  return { port, pid: child.pid, stop: () => stopChild(child) };
}
