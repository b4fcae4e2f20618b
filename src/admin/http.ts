import http from 'node:http';
import type { Logger } from 'pino';
import type { Registry } from 'prom-client';
import type { Pool } from '../pool/pool.js';
import type { UsageRegistry } from '../stats/usage.js';
import { DASHBOARD_HTML } from './dashboard.js';
import { parseWindow, usageReport } from './report.js';

export interface AdminHttpSource {
  readonly usage: UsageRegistry;
  readonly poolList: Pool[];
  /** Accepting clients and not draining. */
  readonly ready: boolean;
}

/**
 * The admin HTTP port: /metrics (Prometheus), /health (the process answers), /ready (accepting
 * clients), /tenants (usage JSON, `?since=1h` for a window) and / (the dashboard).
 */
export async function startAdminHttp(host: string, port: number, source: AdminHttpSource, metrics: Registry, log: Logger): Promise<http.Server> {
  const server = http.createServer((req, res) => {
    const url = new URL(req.url ?? '/', 'http://admin');
    const send = (status: number, type: string, body: string): void => {
      res.writeHead(status, { 'content-type': type, 'cache-control': 'no-store' });
      res.end(body);
    };
    if (req.method !== 'GET' && req.method !== 'HEAD') return send(405, 'text/plain', 'method not allowed\n');
    switch (url.pathname) {
      case '/metrics':
        metrics.metrics().then(
          (text) => send(200, metrics.contentType, text),
          (err: unknown) => send(500, 'text/plain', `metrics failed: ${String(err)}\n`),
        );
        return;
      case '/health':
        return send(200, 'text/plain', 'ok\n');
      case '/ready':
        return source.ready ? send(200, 'text/plain', 'ready\n') : send(503, 'text/plain', 'not ready\n');
      case '/tenants': {
        const since = url.searchParams.get('since');
        let windowMs: number | undefined;
        try {
          windowMs = since === null ? undefined : parseWindow(since);
        } catch (err) {
          return send(400, 'text/plain', `${(err as Error).message}\n`);
        }
        return send(200, 'application/json', JSON.stringify(usageReport(source.usage, source.poolList, windowMs)));
      }
      case '/':
        return send(200, 'text/html; charset=utf-8', DASHBOARD_HTML);
      default:
        return send(404, 'text/plain', 'not found\n');
    }
  });
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen(port, host, () => {
      server.off('error', reject);
      resolve();
    });
  });
  const addr = server.address();
  log.info({ host, port: typeof addr === 'object' && addr !== null ? addr.port : port }, 'admin HTTP listening (/metrics, /health, /ready, /tenants, /)');
  return server;
}
