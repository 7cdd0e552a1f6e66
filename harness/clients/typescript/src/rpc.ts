// The airlock.v1 gRPC API on a unix socket: the proto is loaded at run time
// (no generated code), calls are promisified, and failures become AirlockError
// with the gRPC status name and the daemon's message verbatim (it names the
// field or step that failed).
import { existsSync } from 'node:fs';
import http2 from 'node:http2';
import net from 'node:net';
import { dirname, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import * as grpc from '@grpc/grpc-js';
import * as protoLoader from '@grpc/proto-loader';

export const DEFAULT_SOCKET = '/run/airlock/airlockd.sock';
/** Messages of WriteFile and Upload are cut to this size. */
export const CHUNK_SIZE = 64 * 1024;

/** A failed call: `code` is the gRPC status name ("NOT_FOUND"), `details` the daemon's message. */
export class AirlockError extends Error {
  readonly code: string;
  readonly details: string;
  constructor(code: string, details: string, operation?: string) {
    super(`${operation ? `${operation}: ` : ''}${code}: ${details}`);
    this.name = 'AirlockError';
    this.code = code;
    this.details = details;
  }
}

function toAirlockError(error: unknown, operation: string): AirlockError {
  const e = error as grpc.ServiceError;
  if (e && typeof e.code === 'number') {
    return new AirlockError(grpc.status[e.code] ?? String(e.code), e.details ?? e.message, operation);
  }
  return new AirlockError('UNKNOWN', error instanceof Error ? error.message : String(error), operation);
}

/**
 * Where airlock.proto is: $AIRLOCK_PROTO if set, else a copy bundled in the
 * package (proto/airlock/v1/airlock.proto), else the repository's
 * harness/proto, two levels above the package.
 */
export function resolveProtoPath(): { root: string; file: string } {
  const rel = 'airlock/v1/airlock.proto';
  const fromEnv = process.env.AIRLOCK_PROTO;
  if (fromEnv) {
    if (!existsSync(fromEnv)) throw new Error(`AIRLOCK_PROTO ${fromEnv} does not exist`);
    const file = resolve(fromEnv);
    return { root: resolve(dirname(file), '..', '..'), file };
  }
  const pkg = resolve(dirname(fileURLToPath(import.meta.url)), '..');
  for (const root of [resolve(pkg, 'proto'), resolve(pkg, '..', '..', 'proto')]) {
    if (existsSync(resolve(root, rel))) return { root, file: resolve(root, rel) };
  }
  throw new Error(`airlock.proto not found (looked in ${pkg}/proto and ${pkg}/../../proto; set AIRLOCK_PROTO)`);
}

let serviceCtor: grpc.ServiceClientConstructor | undefined;

function loadService(): grpc.ServiceClientConstructor {
  if (serviceCtor) return serviceCtor;
  const { root, file } = resolveProtoPath();
  const def = protoLoader.loadSync(file, {
    includeDirs: [root],
    keepCase: true,
    longs: Number,
    enums: String,
    defaults: true,
    oneofs: true,
  });
  const pkg = grpc.loadPackageDefinition(def) as any;
  serviceCtor = pkg.airlock.v1.Airlock as grpc.ServiceClientConstructor;
  return serviceCtor;
}

/** "unix:/path" for a socket path; anything with a scheme is passed through. */
export function socketTarget(socket: string): string {
  if (/^[a-z]+:/.test(socket)) return socket;
  return `unix:${resolve(socket)}`;
}

const MAX_MESSAGE = 80 << 20;

/**
 * Unary calls as gRPC's HTTP/2 protocol spells them, on node's own http2
 * session to the unix socket. A call through @grpc/grpc-js costs ~0.6 ms
 * more here (its channel, filters and resolver per call), and an agent's
 * exec_command is a unary call or two; streams stay on grpc-js.
 */
class UnaryTransport {
  private session: http2.ClientHttp2Session | undefined;
  // Calls in flight per session: they keep node running, an idle connection doesn't.
  private readonly active = new WeakMap<http2.ClientHttp2Session, number>();

  constructor(private readonly socket: string, private readonly service: grpc.ServiceDefinition) {}

  private connect(): http2.ClientHttp2Session {
    if (this.session && !this.session.closed && !this.session.destroyed) return this.session;
    const path = this.socket.replace(/^unix:/, '');
    const session = http2.connect('http://localhost', { createConnection: () => net.connect(path) });
    session.on('error', () => undefined);  // each call reports its own failure
    session.on('close', () => { if (this.session === session) this.session = undefined; });
    this.session = session;
    return session;
  }

  call<T>(method: string, request: Record<string, unknown>): Promise<T> {
    const def = (this.service as any)[method] as grpc.MethodDefinition<any, any> | undefined;
    if (!def) return Promise.reject(new AirlockError('UNIMPLEMENTED', `no method ${method} in airlock.proto`, method));
    const body = def.requestSerialize(request);
    const frame = Buffer.alloc(5 + body.length);
    frame.writeUInt32BE(body.length, 1);
    body.copy(frame, 5);
    return new Promise((resolvePromise, reject) => {
      let stream: http2.ClientHttp2Stream;
      let session: http2.ClientHttp2Session;
      try {
        session = this.connect();
        stream = session.request({
          ':method': 'POST', ':path': def.path, 'content-type': 'application/grpc', te: 'trailers',
        });
      } catch (e) {
        reject(new AirlockError('UNAVAILABLE', `airlockd at ${this.socket}: ${(e as Error).message}`, method));
        return;
      }
      const parts: Buffer[] = [];
      let size = 0;
      let status: string | undefined;
      let message = '';
      const take = (h: http2.IncomingHttpHeaders) => {
        if (h['grpc-status'] === undefined) return;
        status = String(h['grpc-status']);
        try { message = decodeURIComponent(String(h['grpc-message'] ?? '')); } catch { message = String(h['grpc-message']); }
      };
      stream.on('response', take);  // a trailers-only reply (an error) carries its status here
      stream.on('trailers', take);
      stream.on('data', (d: Buffer) => {
        size += d.length;
        if (size > MAX_MESSAGE + 5) stream.close(http2.constants.NGHTTP2_CANCEL);
        else parts.push(d);
      });
      stream.on('error', (e) => reject(new AirlockError('UNAVAILABLE', `airlockd at ${this.socket}: ${e.message}`, method)));
      const inFlight = this.active.get(session) ?? 0;
      this.active.set(session, inFlight + 1);
      if (inFlight === 0) session.ref();
      stream.on('close', () => {
        const left = (this.active.get(session) ?? 1) - 1;
        this.active.set(session, left);
        if (left === 0 && !session.destroyed) session.unref();
        if (status === undefined) {
          reject(new AirlockError('UNAVAILABLE', `airlockd at ${this.socket}: the call ended without a status`, method));
          return;
        }
        if (status !== '0') {
          reject(new AirlockError(grpc.status[Number(status)] ?? status, message, method));
          return;
        }
        const reply = Buffer.concat(parts);
        if (reply.length < 5 || reply[0] !== 0 || reply.readUInt32BE(1) !== reply.length - 5) {
          reject(new AirlockError('INTERNAL', 'a malformed or compressed reply', method));
          return;
        }
        resolvePromise(def.responseDeserialize(reply.subarray(5)) as T);
      });
      stream.end(frame);
    });
  }

  close(): void {
    this.session?.close();
  }
}

/** One channel to airlockd. Shared by every session a client makes. */
export class AirlockConnection {
  readonly socket: string;
  private readonly client: grpc.Client & Record<string, any>;
  private readonly unaries: UnaryTransport;

  constructor(socket: string = process.env.AIRLOCK_SOCKET || DEFAULT_SOCKET) {
    this.socket = socket;
    const Ctor = loadService();
    this.client = new Ctor(socketTarget(socket), grpc.credentials.createInsecure(), {
      'grpc.max_receive_message_length': MAX_MESSAGE,
      'grpc.max_send_message_length': MAX_MESSAGE,
    }) as any;
    this.unaries = new UnaryTransport(socketTarget(socket), Ctor.service);
  }

  close(): void {
    this.unaries.close();
    this.client.close();
  }

  /** A unary call. */
  unary<T = any>(method: string, request: Record<string, unknown>): Promise<T> {
    return this.unaries.call<T>(method, request);
  }

  /** A server stream of FileChunk, gathered into one buffer (bounded by `limit`). */
  chunks(method: string, request: Record<string, unknown>, limit = Number.MAX_SAFE_INTEGER): Promise<Buffer> {
    return new Promise((resolvePromise, reject) => {
      const call = this.client[method](request) as grpc.ClientReadableStream<{ data: Buffer }>;
      const parts: Buffer[] = [];
      let size = 0;
      let failed = false;
      call.on('data', (m: { data: Buffer }) => {
        size += m.data.length;
        if (size > limit && !failed) {
          failed = true;
          call.cancel();
          reject(new AirlockError('RESOURCE_EXHAUSTED', `more than ${limit} bytes`, method));
          return;
        }
        parts.push(m.data);
      });
      call.on('error', (err) => {
        if (!failed) {
          failed = true;
          reject(toAirlockError(err, method));
        }
      });
      call.on('end', () => {
        if (!failed) resolvePromise(Buffer.concat(parts));
      });
    });
  }

  /** A client stream: sends `messages` in order, returns the single reply. */
  upload<T = any>(method: string, messages: Iterable<Record<string, unknown>>): Promise<T> {
    return new Promise((resolvePromise, reject) => {
      const call = this.client[method]((err: grpc.ServiceError | null, reply: T) => {
        if (err) reject(toAirlockError(err, method));
        else resolvePromise(reply);
      }) as grpc.ClientWritableStream<Record<string, unknown>>;
      for (const m of messages) call.write(m);
      call.end();
    });
  }

  /** The raw bidirectional Exec stream. */
  exec(): grpc.ClientDuplexStream<Record<string, unknown>, any> {
    return this.client.Exec();
  }
}

/** `data` cut into messages of at most CHUNK_SIZE bytes each, via `wrap`. */
export function* chunked(data: Uint8Array, wrap: (part: Buffer) => Record<string, unknown>): Generator<Record<string, unknown>> {
  const buf = Buffer.from(data.buffer, data.byteOffset, data.byteLength);
  for (let off = 0; off < buf.length; off += CHUNK_SIZE) yield wrap(buf.subarray(off, off + CHUNK_SIZE));
}
