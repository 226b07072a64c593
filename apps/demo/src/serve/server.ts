/**
 * `gmemlab serve`: the web view over node:http, on 127.0.0.1 only. It answers five routes and nothing else:
 *   GET  /                the page          GET /api/scenarios   the scenarios offered at start
 *   GET  /app.js          the web view      GET /api/backends    the loaded backends, their variants, contracts
 *   POST /api/compare     { scenarios, archs, contracts } -> the Comparison JSON (`--format json`'s shape)
 * Routes are matched on the raw request path, so no spelling of '..' reaches anything; nothing is served from
 * disk by URL (the two assets are in memory). Bodies are bounded, JSON is validated, and a bad request gets a
 * status and one line, never a crash.
 *
 * A comparison runs in a worker thread (dist/serve-worker.js, one per request, at most MAX_WORKERS at once, the
 * rest queued), so the other routes answer while it runs; the worker is terminated when the client goes away. A
 * request is capped at MAX_RUNS runs (scenarios × architectures × designs): 413 with one line beyond it.
 */
import { existsSync } from 'node:fs';
import { createServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';
import { fileURLToPath } from 'node:url';
import { Worker } from 'node:worker_threads';
import { DESIGNS, type Design } from '../run/designs.js';
import { BackendError, DEFAULT_ARCHS, selectArchs, type BackendSet } from '../backends.js';
import { servedPageHtml } from '../format/html.js';
import type { Scenario } from '../scenario/load.js';
import { parseCompareRequest } from './request.js';
import type { CompareAnswer, CompareJob } from './worker.js';

/** The only address the server binds: the page runs scenarios on request and is not meant for a network. */
export const LOOPBACK = '127.0.0.1';
/** Request bodies above this are refused with 413. */
export const MAX_BODY = 64 * 1024;
/**
 * The most runs (scenarios × architectures × designs) one POST /api/compare may ask for. The built-in library under
 * every loaded backend and variant and the three designs is 13 × 13 × 3 = 507 runs (48 s on this 2-core machine);
 * the cap leaves room for a few more backends and refuses what would run for minutes.
 */
export const MAX_RUNS = 1024;
/** Comparisons run at once (one worker thread each); more wait their turn. */
export const MAX_WORKERS = 2;
/** After a 413, at most this much more is read (and dropped) before the connection is cut. */
const MAX_DRAIN = 1024 * 1024;

export interface ServeOptions {
  /** 0 picks a free port. */
  port: number;
  /** Offered by id; the network can choose only among these. */
  scenarios: readonly Scenario[];
  backends: BackendSet;
  /** The web view's browser bundle. */
  script: string;
  /** The most runs one comparison request may ask for (default MAX_RUNS). */
  maxRuns?: number;
}

export interface RunningServer {
  url: string;
  port: number;
  close(): Promise<void>;
}

class HttpError extends Error {
  constructor(
    readonly status: number,
    message: string,
    readonly headers: Record<string, string> = {},
  ) {
    super(message);
  }
}

const PAGE_CSP =
  "default-src 'none'; script-src 'self'; connect-src 'self'; style-src 'unsafe-inline'; img-src data:; base-uri 'none'; form-action 'none'; frame-ancestors 'none'";

function send(
  res: ServerResponse,
  status: number,
  type: string,
  body: string | Buffer,
  headers: Record<string, string> = {},
): void {
  res.writeHead(status, {
    'content-type': type,
    'content-length': String(Buffer.byteLength(body)),
    'cache-control': 'no-store',
    'x-content-type-options': 'nosniff',
    'referrer-policy': 'no-referrer',
    ...headers,
  });
  res.end(body);
}

const sendJson = (res: ServerResponse, status: number, value: unknown, headers: Record<string, string> = {}) =>
  send(res, status, 'application/json; charset=utf-8', JSON.stringify(value), headers);

/** The body as text, at most MAX_BODY bytes (413 beyond, judged on Content-Length first, then on what arrives). */
function readBody(req: IncomingMessage): Promise<string> {
  const declared = Number(req.headers['content-length'] ?? '0');
  if (Number.isFinite(declared) && declared > MAX_BODY)
    return Promise.reject(new HttpError(413, `request body larger than ${MAX_BODY} bytes`, { connection: 'close' }));
  return new Promise((resolve, reject) => {
    const chunks: Buffer[] = [];
    let size = 0;
    const onData = (chunk: Buffer) => {
      size += chunk.length;
      if (size > MAX_BODY) {
        req.off('data', onData);
        reject(new HttpError(413, `request body larger than ${MAX_BODY} bytes`, { connection: 'close' }));
        return;
      }
      chunks.push(chunk);
    };
    req.on('data', onData);
    req.on('end', () => resolve(Buffer.concat(chunks).toString('utf8')));
    req.on('error', reject);
  });
}

/** Let the client finish sending a refused body (so it reads our answer), up to a bound; then cut it off. */
function drain(req: IncomingMessage): void {
  let dropped = 0;
  req.on('data', (chunk: Buffer) => {
    dropped += chunk.length;
    if (dropped > MAX_DRAIN) req.socket.destroy();
  });
  req.resume();
}

const oneLine = (s: string) => s.replace(/\s+/g, ' ').trim();

type Handler = (req: IncomingMessage, res: ServerResponse) => Promise<void> | void;
interface Route {
  method: 'GET' | 'POST';
  handle: Handler;
}

/**
 * dist/serve-worker.js: beside this module once built (dist/bin.js, dist/index.js); from src/ (tests run the
 * source), the built one in dist/.
 */
function workerFile(): URL {
  const beside = new URL('./serve-worker.js', import.meta.url);
  if (existsSync(fileURLToPath(beside))) return beside;
  const built = new URL('../../dist/serve-worker.js', import.meta.url);
  if (existsSync(fileURLToPath(built))) return built;
  throw new Error('serve-worker.js is missing: build @gmemlab/demo (pnpm build)');
}

export function startServer(options: ServeOptions): Promise<RunningServer> {
  const page = servedPageHtml();
  const maxRuns = options.maxRuns ?? MAX_RUNS;
  const byId = new Map(options.scenarios.map((s) => [s.id, s]));
  const scenarioList = options.scenarios.map((s) => ({
    id: s.id,
    title: s.title,
    situation: s.situation,
    source: s.source,
    ...(s.contracts ? { contracts: s.contracts } : {}),
  }));
  const backendList = {
    backends: options.backends.loaded.map((b) => ({
      id: b.id,
      name: b.name,
      package: b.package,
      version: b.version,
      variants: b.variants.map((v) => `${b.id}:${v}`),
    })),
    defaults: DEFAULT_ARCHS.filter((id) => options.backends.loaded.some((b) => b.id === id)),
    contracts: [...DESIGNS],
  };

  const compareRoute: Handler = async (req, res) => {
    const type = String(req.headers['content-type'] ?? '');
    // A JSON content type also keeps cross-site form posts out: a browser sends those only after a preflight.
    if (!/^application\/json\s*(;|$)/i.test(type))
      throw new HttpError(415, 'send the request as Content-Type: application/json');
    const text = await readBody(req);
    let json: unknown;
    try {
      json = JSON.parse(text);
    } catch (error) {
      throw new HttpError(400, `the body is not valid JSON: ${(error as Error).message}`);
    }
    const parsed = parseCompareRequest(json);
    if (!parsed.ok) throw new HttpError(400, parsed.message);
    const { request } = parsed;
    const scenarios = [...new Set(request.scenarios)].map((id) => {
      const scenario = byId.get(id);
      if (!scenario)
        throw new HttpError(400, `unknown scenario '${id}'; this server offers ${[...byId.keys()].join(', ')}`);
      return scenario;
    });
    let backends;
    try {
      backends = selectArchs(options.backends, [...new Set(request.archs)].join(','));
    } catch (error) {
      if (error instanceof BackendError) throw new HttpError(400, error.message.replace(/^--arch: /, 'archs: '));
      throw error;
    }
    const contracts = [...new Set(request.contracts)] as Design[];
    const runs = scenarios.length * backends.length * contracts.length;
    if (runs > maxRuns)
      throw new HttpError(
        413,
        `this comparison is ${runs} runs (${scenarios.length} scenarios × ${backends.length} architectures × ${contracts.length} designs); this server runs at most ${maxRuns} per request (gmemlab serve --max-runs): ask for fewer, or run \`gmemlab compare\` on the command line`,
      );
    const answer = await inWorker(res, {
      ...(options.backends.config !== undefined ? { config: options.backends.config } : {}),
      cwd: process.cwd(),
      scenarios,
      archs: [...new Set(request.archs)],
      contracts,
    });
    if (answer === undefined) return; // the client went away; the worker was terminated
    if (!answer.ok) throw new Error(answer.message);
    send(res, 200, 'application/json; charset=utf-8', answer.json);
  };

  const workers = new Set<Worker>();
  const queue: Array<() => void> = [];
  let closing = false;
  /** A slot for one more worker: now, or when a running one ends. */
  const slot = () => (workers.size < MAX_WORKERS ? Promise.resolve() : new Promise<void>((go) => queue.push(go)));
  const next = () => {
    while (workers.size < MAX_WORKERS && queue.length > 0) queue.shift()!();
  };
  /** Run one comparison in a worker thread; undefined when the client went away first (the worker is terminated). */
  const inWorker = async (res: ServerResponse, job: CompareJob): Promise<CompareAnswer | undefined> => {
    const gone = () => res.destroyed || res.writableEnded || closing;
    await slot();
    if (gone()) {
      next();
      return undefined;
    }
    return new Promise((resolve) => {
      const worker = new Worker(workerFile(), { workerData: job });
      workers.add(worker);
      let answer: CompareAnswer | undefined;
      const leave = () => worker.terminate();
      res.once('close', leave);
      worker.once('message', (m: CompareAnswer) => (answer = m));
      worker.once('error', (error) => (answer ??= { ok: false, message: error.message }));
      worker.once('exit', () => {
        workers.delete(worker);
        res.off('close', leave);
        next();
        resolve(
          gone() ? undefined : (answer ?? { ok: false, message: 'the comparison worker stopped without an answer' }),
        );
      });
    });
  };

  const routes = new Map<string, Route>([
    [
      '/',
      {
        method: 'GET',
        handle: (_req, res) =>
          send(res, 200, 'text/html; charset=utf-8', page, { 'content-security-policy': PAGE_CSP }),
      },
    ],
    [
      '/app.js',
      { method: 'GET', handle: (_req, res) => send(res, 200, 'text/javascript; charset=utf-8', options.script) },
    ],
    ['/api/scenarios', { method: 'GET', handle: (_req, res) => sendJson(res, 200, { scenarios: scenarioList }) }],
    ['/api/backends', { method: 'GET', handle: (_req, res) => sendJson(res, 200, backendList) }],
    ['/api/compare', { method: 'POST', handle: compareRoute }],
  ]);

  let port = options.port;
  const allowedHosts = () => new Set([`${LOOPBACK}:${port}`, `localhost:${port}`]);

  const handler = async (req: IncomingMessage, res: ServerResponse) => {
    try {
      // The raw path, not a normalised URL: '/%2e%2e/' and '/../x' are not '/' here, they are unknown.
      const path = (req.url ?? '').split('?')[0]!;
      const route = routes.get(path);
      if (!route) throw new HttpError(404, `no such route: ${path.slice(0, 200)}`);
      // DNS rebinding: a page of another site that resolves its name to 127.0.0.1 still says its own Host.
      if (!allowedHosts().has(String(req.headers.host ?? '').toLowerCase()))
        throw new HttpError(403, `this server answers only to Host ${LOOPBACK}:${port} or localhost:${port}`);
      const method = req.method === 'HEAD' && route.method === 'GET' ? 'GET' : req.method;
      if (method !== route.method)
        throw new HttpError(405, `${req.method} is not allowed on ${path}; use ${route.method}`, {
          allow: route.method === 'GET' ? 'GET, HEAD' : route.method,
        });
      await route.handle(req, res);
    } catch (error) {
      if (res.headersSent) {
        res.destroy();
        return;
      }
      if (error instanceof HttpError) {
        if (error.status === 413 || (req.method === 'POST' && !req.complete)) drain(req);
        sendJson(res, error.status, { error: oneLine(error.message) }, error.headers);
        return;
      }
      sendJson(res, 500, {
        error: oneLine(`internal error: ${error instanceof Error ? error.message : String(error)}`),
      });
    }
  };

  const server: Server = createServer((req, res) => void handler(req, res));
  server.on('clientError', (_error, socket) => {
    if (socket.writable) socket.end('HTTP/1.1 400 Bad Request\r\nconnection: close\r\ncontent-length: 0\r\n\r\n');
    else socket.destroy();
  });

  return new Promise((resolve, reject) => {
    server.once('error', reject);
    server.listen({ host: LOOPBACK, port: options.port, exclusive: true }, () => {
      server.off('error', reject);
      port = (server.address() as AddressInfo).port;
      resolve({
        url: `http://${LOOPBACK}:${port}/`,
        port,
        close: () =>
          new Promise<void>((done) => {
            closing = true;
            for (const worker of workers) void worker.terminate();
            for (const go of queue.splice(0)) go();
            server.close(() => done());
            server.closeAllConnections();
          }),
      });
    });
  });
}
