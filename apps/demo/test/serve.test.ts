/**
 * `gmemlab serve` without a browser: the built binary on a free loopback port answers its five routes and
 * nothing else, refuses what it must (404, 405, 413, 415, 400, 403) with one line, never falls over, listens on
 * 127.0.0.1 only and stops cleanly on SIGINT.
 */
import { request } from 'node:http';
import { connect } from 'node:net';
import { networkInterfaces } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { cli, FIXTURES, requireBuild, serve, type Served } from './support.js';

interface Answer {
  status: number;
  headers: Record<string, string | string[] | undefined>;
  body: string;
}

/** A raw request: the path goes on the wire exactly as given (no URL normalisation). */
function raw(
  served: Served,
  method: string,
  path: string,
  options: { body?: string | Buffer; headers?: Record<string, string>; chunked?: boolean } = {},
): Promise<Answer> {
  return new Promise((resolve, reject) => {
    const headers: Record<string, string> = { host: `127.0.0.1:${served.port}`, ...options.headers };
    if (options.body !== undefined && !options.chunked)
      headers['content-length'] = String(Buffer.byteLength(options.body));
    const req = request({ host: '127.0.0.1', port: served.port, method, path, headers, agent: false }, (res) => {
      let body = '';
      res.setEncoding('utf8').on('data', (d: string) => (body += d));
      res.on('end', () => resolve({ status: res.statusCode ?? 0, headers: res.headers, body }));
    });
    req.on('error', reject);
    if (options.body !== undefined) {
      if (options.chunked) {
        // Several writes without Content-Length: node sends them chunked.
        const b = Buffer.from(options.body);
        for (let at = 0; at < b.length; at += 16 * 1024) req.write(b.subarray(at, at + 16 * 1024));
      } else req.write(options.body);
    }
    req.end();
  });
}

const postJson = (served: Served, body: unknown) =>
  raw(served, 'POST', '/api/compare', {
    body: typeof body === 'string' ? body : JSON.stringify(body),
    headers: { 'content-type': 'application/json' },
  });

function refused(port: number, host: string): Promise<boolean> {
  return new Promise((resolve) => {
    const socket = connect({ port, host });
    socket.once('connect', () => {
      socket.destroy();
      resolve(false);
    });
    socket.once('error', () => resolve(true));
  });
}

const oneLineError = (a: Answer) => {
  const json = JSON.parse(a.body) as { error: string };
  expect(json.error).toMatch(/\S/);
  expect(json.error).not.toContain('\n');
  expect(json.error).not.toMatch(/\bat .*\(.*:\d+:\d+\)/);
  return json.error;
};

describe('gmemlab serve', () => {
  let served: Served;
  beforeAll(async () => {
    requireBuild();
    served = await serve([join(FIXTURES, 'registry-then-punch.yaml')]);
  }, 30_000);
  afterAll(async () => {
    await served?.stop();
  });

  it('prints the URL it bound: 127.0.0.1 and the port it was given (0: a free one)', () => {
    expect(served.url).toBe(`http://127.0.0.1:${served.port}/`);
    expect(served.port).toBeGreaterThan(0);
  });

  it('GET / is the page; GET /app.js the web view, from memory', async () => {
    const page = await raw(served, 'GET', '/');
    expect(page.status).toBe(200);
    expect(page.headers['content-type']).toMatch(/^text\/html/);
    expect(page.headers['content-security-policy']).toContain("default-src 'none'");
    expect(page.body).toContain('<script src="/app.js"></script>');
    const app = await raw(served, 'GET', '/app.js');
    expect(app.status).toBe(200);
    expect(app.headers['content-type']).toMatch(/^text\/javascript/);
    expect(app.body.length).toBeGreaterThan(1000);
  });

  it('GET /api/scenarios lists the built-in scenarios (and those given at start) with id, title, situation, source', async () => {
    const a = await raw(served, 'GET', '/api/scenarios');
    expect(a.status).toBe(200);
    const { scenarios } = JSON.parse(a.body) as { scenarios: Array<Record<string, unknown>> };
    const rfc = scenarios.find((s) => s.id === 'rfc-as-posted')!;
    expect(rfc).toMatchObject({
      id: 'rfc-as-posted',
      title: expect.any(String),
      situation: expect.any(String),
      source: expect.any(Array),
    });
    expect(scenarios.map((s) => s.id)).toContain('registry-then-punch');
    expect(a.body).not.toContain(FIXTURES);
  });

  it('GET /api/backends lists the loaded backends with ids and variants, the default choice and the contracts', async () => {
    const a = await raw(served, 'GET', '/api/backends');
    const json = JSON.parse(a.body) as {
      backends: Array<{ id: string; variants: string[] }>;
      defaults: string[];
      contracts: string[];
    };
    expect(json.backends.map((b) => b.id)).toEqual(expect.arrayContaining(['tdx', 'sev-snp', 'arm-cca', 'pkvm']));
    for (const b of json.backends) for (const v of b.variants) expect(v.startsWith(`${b.id}:`)).toBe(true);
    expect(json.defaults).toEqual(['tdx', 'sev-snp', 'arm-cca', 'pkvm']);
    expect(json.contracts).toEqual(expect.arrayContaining(['vmm-driven', 'gmem-registry']));
  });

  it('POST /api/compare answers the Comparison JSON of `gmemlab compare --format json`, page maps included', async () => {
    const a = await postJson(served, {
      scenarios: ['rfc-as-posted'],
      archs: ['tdx', 'sev-snp'],
      contracts: ['vmm-driven'],
    });
    expect(a.status).toBe(200);
    const got = JSON.parse(a.body) as import('../src/run/types.js').Comparison;
    const want = JSON.parse(
      cli(['compare', 'rfc-as-posted', '--arch', 'tdx,sev-snp', '--contract', 'vmm-driven', '--format', 'json']).stdout,
    ) as typeof got;
    const labels = (c: typeof got) =>
      c.runs.map((r) => [r.arch, r.contract, r.steps.map((s) => `${s.path}=${s.label}`)]);
    expect(labels(got)).toEqual(labels(want));
    expect(got.runs[0]!.steps.at(-1)!.pages!.length).toBeGreaterThan(0);
  });

  it('unknown routes are 404', async () => {
    for (const path of [
      '/nope',
      '/index.html',
      '/api',
      '/api/',
      '/app.js/',
      '/API/scenarios',
      '/package.json',
      '/scenarios/rfc-as-posted.yaml',
    ]) {
      const a = await raw(served, 'GET', path);
      expect(a.status, path).toBe(404);
      oneLineError(a);
    }
  });

  it('path traversal attempts are 404: the raw path is matched, nothing is read from disk by URL', async () => {
    for (const path of [
      '/../package.json',
      '/%2e%2e/',
      '/%2e%2e/package.json',
      '/..%2fpackage.json',
      '/%2E%2E%2Fpackage.json',
      '/app.js/../../package.json',
      '//etc/passwd',
      '/./app.js',
      '/%2fapp.js',
      '/app.js%00',
      '/\\..\\package.json',
    ]) {
      const a = await raw(served, 'GET', path);
      expect(a.status, path).toBe(404);
      expect(a.body, path).not.toContain('"name"');
    }
  });

  it('a known route with the wrong method is 405 with Allow', async () => {
    const a = await raw(served, 'POST', '/');
    expect(a.status).toBe(405);
    expect(a.headers.allow).toBe('GET, HEAD');
    const b = await raw(served, 'GET', '/api/compare');
    expect(b.status).toBe(405);
    expect(b.headers.allow).toBe('POST');
    expect((await raw(served, 'DELETE', '/api/scenarios')).status).toBe(405);
  });

  it('a body over 64 KiB is 413, by Content-Length or as it streams in', async () => {
    const big = JSON.stringify({ scenarios: ['x'.repeat(100 * 1024)], archs: ['tdx'], contracts: ['vmm-driven'] });
    const a = await raw(served, 'POST', '/api/compare', { body: big, headers: { 'content-type': 'application/json' } });
    expect(a.status).toBe(413);
    oneLineError(a);
    const b = await raw(served, 'POST', '/api/compare', {
      body: big,
      headers: { 'content-type': 'application/json' },
      chunked: true,
    });
    expect(b.status).toBe(413);
  });

  it('bad JSON and bad requests are 400 with one line', async () => {
    const cases: Array<[unknown, RegExp]> = [
      ['{"scenarios": [', /not valid JSON/],
      ['[]', /the body/],
      [{ scenarios: ['rfc-as-posted'], archs: ['tdx'] }, /contracts/],
      [
        { scenarios: ['rfc-as-posted'], archs: ['tdx'], contracts: ['vmm-driven'], file: '/etc/passwd' },
        /unknown field 'file'/,
      ],
      [{ scenarios: ['../../package.json'], archs: ['tdx'], contracts: ['vmm-driven'] }, /scenarios\.0/],
      [{ scenarios: ['/etc/passwd'], archs: ['tdx'], contracts: ['vmm-driven'] }, /scenarios\.0/],
      [
        { scenarios: ['no-such-scenario'], archs: ['tdx'], contracts: ['vmm-driven'] },
        /unknown scenario 'no-such-scenario'/,
      ],
      [
        { scenarios: ['rfc-as-posted'], archs: ['tdz'], contracts: ['vmm-driven'] },
        /unknown architecture 'tdz' \(did you mean tdx\?\)/,
      ],
      [{ scenarios: ['rfc-as-posted'], archs: ['tdx'], contracts: ['trust-me'] }, /contracts\.0/],
      [{ scenarios: [], archs: ['tdx'], contracts: ['vmm-driven'] }, /scenarios/],
    ];
    for (const [body, message] of cases) {
      const a = await postJson(served, body);
      expect(a.status, JSON.stringify(body)).toBe(400);
      expect(oneLineError(a)).toMatch(message);
    }
  });

  it('POST /api/compare wants Content-Type: application/json (415 otherwise, which keeps cross-site form posts out)', async () => {
    const a = await raw(served, 'POST', '/api/compare', {
      body: 'scenarios=rfc-as-posted',
      headers: { 'content-type': 'application/x-www-form-urlencoded' },
    });
    expect(a.status).toBe(415);
  });

  it('a request naming another Host is 403 (DNS rebinding)', async () => {
    const a = await raw(served, 'GET', '/api/scenarios', { headers: { host: `attacker.example:${served.port}` } });
    expect(a.status).toBe(403);
    expect((await raw(served, 'GET', '/', { headers: { host: `localhost:${served.port}` } })).status).toBe(200);
  });

  it('a malformed request line gets 400 and the server goes on', async () => {
    const answer = await new Promise<string>((resolve) => {
      const socket = connect({ port: served.port, host: '127.0.0.1' });
      let data = '';
      socket.on('data', (d) => (data += String(d)));
      socket.on('close', () => resolve(data));
      socket.on('error', () => resolve(data));
      socket.write('GARBAGE \x00\x01 nonsense\r\n\r\n');
    });
    expect(answer).toMatch(/^HTTP\/1\.1 400/);
    expect((await raw(served, 'GET', '/')).status).toBe(200);
  });

  it('after every bad request it still serves', async () => {
    expect((await raw(served, 'GET', '/api/scenarios')).status).toBe(200);
    expect(served.child.exitCode).toBeNull();
  });

  it('listens on 127.0.0.1 only: not on ::1, not on any other address of this machine', async () => {
    expect(await refused(served.port, '127.0.0.1')).toBe(false);
    expect(await refused(served.port, '::1')).toBe(true);
    const others = Object.values(networkInterfaces())
      .flat()
      .filter((i) => i && !i.internal)
      .map((i) => i!.address);
    for (const address of others) expect(await refused(served.port, address), address).toBe(true);
  });
});

describe('gmemlab serve: options and stopping', () => {
  it('refuses --host with one line and exit 2: it binds 127.0.0.1 only', () => {
    const r = cli(['serve', '--host', '0.0.0.0', '--port', '0']);
    expect(r.status).toBe(2);
    expect(r.stderr.trim().split('\n')).toHaveLength(1);
    expect(r.stderr).toMatch(/^gmemlab: --host: gmemlab serve binds 127\.0\.0\.1 only/);
  });

  it('refuses a port that is not a number, with exit 2', () => {
    const r = cli(['serve', '--port', '99999']);
    expect(r.status).toBe(2);
    expect(r.stderr).toMatch(/--port: '99999' is not a port number/);
  });

  it('a port in use is one line and exit 2', async () => {
    const first = await serve();
    try {
      const r = cli(['serve', '--port', String(first.port)]);
      expect(r.status).toBe(2);
      expect(r.stderr.trim()).toMatch(new RegExp(`^gmemlab: --port ${first.port}: the port is in use`));
    } finally {
      await first.stop();
    }
  });

  it('stops cleanly on SIGINT (exit 0, says so)', async () => {
    requireBuild();
    const s = await serve();
    expect((await fetch(`${s.url}api/scenarios`)).status).toBe(200);
    const code = await s.stop();
    expect(code).toBe(0);
    expect(s.output().stdout).toMatch(/gmemlab: stopped\n$/);
    expect(s.output().stderr).toBe('');
  });
});

describe('gmemlab serve: comparisons off the request thread', () => {
  let served: Served;
  beforeAll(async () => {
    requireBuild();
    served = await serve(['--max-runs', '600']);
  }, 30_000);
  afterAll(async () => {
    await served?.stop();
  });

  /** A POST /api/compare that the test can abandon (the client going away). */
  const pending = (body: unknown) => {
    let answered = false;
    const text = JSON.stringify(body);
    const req = request(
      {
        host: '127.0.0.1',
        port: served.port,
        method: 'POST',
        path: '/api/compare',
        agent: false,
        headers: {
          host: `127.0.0.1:${served.port}`,
          'content-type': 'application/json',
          'content-length': String(Buffer.byteLength(text)),
        },
      },
      (res) => {
        answered = true;
        res.resume();
      },
    );
    req.on('error', () => {});
    req.end(text);
    return { answered: () => answered, abandon: () => req.destroy() };
  };

  it('answers GET /api/backends within a second while the largest comparison runs; a client that goes away frees its worker', async () => {
    const { scenarios } = JSON.parse((await raw(served, 'GET', '/api/scenarios')).body) as {
      scenarios: Array<{ id: string }>;
    };
    const large = {
      scenarios: scenarios.map((s) => s.id),
      archs: ['all'],
      contracts: ['vmm-driven', 'gmem-registry', 'mirror'],
    };
    const first = pending(large);
    const second = pending(large);
    // Both workers loaded their backends and are running scenarios by now.
    await new Promise((r) => setTimeout(r, 2000));
    const timings: number[] = [];
    for (let i = 0; i < 5; i++) {
      const t0 = performance.now();
      const a = await raw(served, 'GET', '/api/backends');
      timings.push(Math.round(performance.now() - t0));
      expect(a.status).toBe(200);
      expect((JSON.parse(a.body) as { backends: unknown[] }).backends.length).toBeGreaterThan(4);
      await new Promise((r) => setTimeout(r, 200));
    }
    console.log(`GET /api/backends while two ${scenarios.length}-scenario comparisons ran: ${timings.join(', ')} ms`);
    for (const t of timings) expect(t).toBeLessThan(1000);
    // The large comparisons were still running the whole time (each takes tens of seconds).
    expect(first.answered() || second.answered()).toBe(false);
    // Both clients go away: their workers are terminated, so a small comparison gets a slot at once rather than
    // after the large ones (MAX_WORKERS is 2; a worker left running would hold its slot for tens of seconds).
    first.abandon();
    second.abandon();
    const t0 = performance.now();
    const small = await postJson(served, { scenarios: ['rfc-as-posted'], archs: ['tdx'], contracts: ['vmm-driven'] });
    const took = Math.round(performance.now() - t0);
    console.log(`a small comparison after the large ones were abandoned: ${took} ms`);
    expect(small.status).toBe(200);
    expect((JSON.parse(small.body) as { runs: unknown[] }).runs).toHaveLength(1);
    expect(took).toBeLessThan(8000);
  }, 60_000);

  it('a comparison over --max-runs (scenarios × architectures × designs) is 413 with one line naming the count; at the cap it runs', async () => {
    const s = await serve(['--max-runs', '4']);
    try {
      const over = await raw(s, 'POST', '/api/compare', {
        body: JSON.stringify({
          scenarios: ['rfc-as-posted'],
          archs: ['tdx', 'sev-snp', 'pkvm'],
          contracts: ['vmm-driven', 'mirror'],
        }),
        headers: { 'content-type': 'application/json' },
      });
      expect(over.status).toBe(413);
      expect(oneLineError(over)).toMatch(
        /^this comparison is 6 runs \(1 scenarios × 3 architectures × 2 designs\); this server runs at most 4 per request/,
      );
      const at = await raw(s, 'POST', '/api/compare', {
        body: JSON.stringify({
          scenarios: ['rfc-as-posted'],
          archs: ['tdx', 'sev-snp'],
          contracts: ['vmm-driven', 'mirror'],
        }),
        headers: { 'content-type': 'application/json' },
      });
      expect(at.status).toBe(200);
      expect((JSON.parse(at.body) as { runs: unknown[] }).runs).toHaveLength(4);
      expect((await raw(s, 'GET', '/api/backends')).status).toBe(200);
    } finally {
      await s.stop();
    }
  }, 60_000);

  it('--max-runs must be a whole number', () => {
    requireBuild();
    const r = cli(['serve', '--port', '0', '--max-runs', '0']);
    expect(r.status).toBe(2);
    expect(r.stderr.trim()).toMatch(/--max-runs: '0' is not a whole number/);
  });
});
