/**
 * The gmem-helper child process and its line protocol (README.md, "Protocol"): one request line in, one
 * response line out, strictly in order. A response that does not come within the timeout kills the helper;
 * an exit fails every pending request. Either way the caller gets a HelperError, never a hang.
 */
import { spawn, type ChildProcessWithoutNullStreams } from 'node:child_process';
import { HelperError } from './errors.js';

export type Response =
  { ok: true; words: string[] } | { ok: false; errno: string } | { fault: string; address: number; done: number };

interface Pending {
  line: string;
  resolve(response: Response): void;
  reject(error: Error): void;
  timer: NodeJS.Timeout;
}

export interface HelperOptions {
  /** How long one request may take before the helper is killed (ms); default 10 000. */
  timeoutMs?: number;
}

export class Helper {
  private readonly child: ChildProcessWithoutNullStreams;
  private readonly queue: Pending[] = [];
  private buffer = '';
  private stderr = '';
  private exited: string | undefined;
  private readonly timeoutMs: number;
  /** The first line the helper prints: 'hello ok <api version>' or 'hello err <errno>'. */
  readonly hello: Promise<Response>;

  /** Start the helper binary at `path` (native.ts's ensureHelper() finds or builds it). */
  constructor(path: string, options: HelperOptions = {}) {
    this.timeoutMs = options.timeoutMs ?? 10_000;
    this.child = spawn(path, [], { stdio: ['pipe', 'pipe', 'pipe'] });
    this.child.stdout.setEncoding('utf8');
    this.child.stderr.setEncoding('utf8');
    this.child.stdout.on('data', (chunk: string) => this.onData(chunk));
    this.child.stderr.on('data', (chunk: string) => {
      this.stderr = (this.stderr + chunk).slice(-4000);
    });
    this.child.stdin.on('error', () => {});
    this.child.on('error', (error) => this.onExit(`could not start ${path}: ${error.message}`));
    this.child.on('exit', (code, signal) => this.onExit(`exited with ${signal ? `signal ${signal}` : `code ${code}`}`));
    this.hello = this.enqueue('(hello)', false);
  }

  private onData(chunk: string): void {
    this.buffer += chunk;
    let newline: number;
    while ((newline = this.buffer.indexOf('\n')) >= 0) {
      const line = this.buffer.slice(0, newline);
      this.buffer = this.buffer.slice(newline + 1);
      const pending = this.queue.shift();
      if (!pending) continue;
      clearTimeout(pending.timer);
      pending.resolve(parse(line.startsWith('hello ') ? line.slice(6) : line));
    }
  }

  private onExit(why: string): void {
    if (this.exited) return;
    this.exited = why;
    const error = new HelperError(`gmem-helper ${why}${this.stderr ? `; stderr: ${this.stderr.trim()}` : ''}`);
    for (const pending of this.queue.splice(0)) {
      clearTimeout(pending.timer);
      pending.reject(error);
    }
  }

  private enqueue(line: string, send: boolean): Promise<Response> {
    if (this.exited) return Promise.reject(new HelperError(`gmem-helper ${this.exited}`));
    return new Promise<Response>((resolve, reject) => {
      const timer = setTimeout(() => {
        this.child.kill('SIGKILL');
        this.onExit(`timed out after ${this.timeoutMs} ms on "${line.slice(0, 120)}"`);
      }, this.timeoutMs);
      this.queue.push({ line, resolve, reject, timer });
      if (send) this.child.stdin.write(`${line}\n`);
    });
  }

  /** Send one request (words joined by spaces) and wait for its response. */
  request(...words: Array<string | number | bigint>): Promise<Response> {
    return this.enqueue(words.join(' '), true);
  }

  /** Release everything the helper holds and end it. */
  async close(): Promise<void> {
    if (this.exited) return;
    const done = new Promise<void>((resolve) => this.child.once('exit', () => resolve()));
    this.child.stdin.end('quit\n');
    const timer = setTimeout(() => this.child.kill('SIGKILL'), this.timeoutMs);
    await done;
    clearTimeout(timer);
  }
}

function parse(line: string): Response {
  const words = line.trim().split(/\s+/);
  if (words[0] === 'ok') return { ok: true, words: words.slice(1) };
  if (words[0] === 'err') return { ok: false, errno: words[1] ?? 'EUNKNOWN' };
  if (words[0] === 'fault') return { fault: words[1] ?? 'unknown', address: Number(words[2]), done: Number(words[3]) };
  return { ok: false, errno: `EPROTO(${line.slice(0, 80)})` };
}

/** Bytes as the protocol's hex token ('-' for none). */
export function toHex(data: Uint8Array): string {
  return data.length === 0 ? '-' : Buffer.from(data.buffer, data.byteOffset, data.byteLength).toString('hex');
}

export function fromHex(token: string | undefined): Uint8Array {
  return !token || token === '-' ? new Uint8Array(0) : new Uint8Array(Buffer.from(token, 'hex'));
}
