// The airlock client's network features against a real airlockd configured
// with an egress config (tests/daemon/test_typescript_client.py starts it):
// an exposed port reached from the host, and git_repo entries cloned inside
// the sandbox through its egress policy. Every address here is loopback.
import { test, after } from 'node:test';
import assert from 'node:assert/strict';
import { request } from 'node:http';
import { Manifest, file, gitRepo } from '@openai/agents/sandbox';
import { AirlockSandboxClient } from '../dist/index.js';
import { SOCKET, skip, text } from './helpers.mjs';

/** A git repository the host serves over dumb HTTP, e.g. http://git.test:PORT/repo.git (git.test resolves to 127.0.0.1 in the daemon's egress.resolve). */
const GIT_URL = process.env.AIRLOCK_GIT_URL || '';
/** The same repository on a name the daemon also resolves to 127.0.0.1 but the policy doesn't allow. */
const GIT_DENIED_URL = process.env.AIRLOCK_GIT_DENIED_URL || '';
/** egress.allow for the git sandboxes, comma-separated (the host with its port, and the loopback address it resolves to). */
const GIT_ALLOW = (process.env.AIRLOCK_GIT_ALLOW || '').split(',').filter(Boolean);
/** What README.txt holds at the tip of the repository's main branch, and sub/inner.txt. */
const GIT_README = process.env.AIRLOCK_GIT_README || '';
const GIT_INNER = process.env.AIRLOCK_GIT_INNER || '';
/** The daemon's egress.expose_address (loopback). */
const EXPOSE_ADDRESS = process.env.AIRLOCK_EXPOSE_ADDRESS || '';

const gitSkip = skip || (!GIT_URL && 'AIRLOCK_GIT_URL is not set');
const exposeSkip = skip || (!EXPOSE_ADDRESS && 'AIRLOCK_EXPOSE_ADDRESS is not set');

const client = new AirlockSandboxClient({ socket: SOCKET });
const sessions = [];
after(async () => {
  for (const s of sessions) await s.delete().catch(() => undefined);
  client.close();
});

async function make(manifest, options) {
  const s = await client.create({ manifest, options });
  sessions.push(s);
  return s;
}

/** One GET of `path` at host:port (HTTP/1.0, no keep-alive): { status, body }. */
function get(host, port, path) {
  return new Promise((resolve, reject) => {
    const req = request({ host, port, path, method: 'GET', agent: false, timeout: 5000 }, (res) => {
      const chunks = [];
      res.on('data', (c) => chunks.push(c));
      res.on('end', () => resolve({ status: res.statusCode, body: Buffer.concat(chunks).toString('utf8') }));
      res.on('error', reject);
    });
    req.on('timeout', () => req.destroy(new Error('timed out')));
    req.on('error', reject);
    req.end();
  });
}

test('resolveExposedPort: a server inside the sandbox answers the host at the address it returns', { skip: exposeSkip }, async () => {
  const s = await make(new Manifest(), { network: 'proxy', exposedPorts: [8000] });
  const token = `served-from-inside-${process.pid}-${Date.now()}`;
  // Written by a command inside the sandbox, not placed by the client.
  const w = await s.exec({ cmd: `mkdir -p www && printf '%s\\n' '${token}' > www/index.txt` });
  assert.equal(w.exitCode, 0, w.output);
  const server = await s.exec({ cmd: 'exec python3 -m http.server 8000 --bind 127.0.0.1 --directory /workspace/www', yieldTimeMs: 300 });
  assert.equal(server.exitCode, undefined, `the server exited: ${server.output}`);
  assert.equal(typeof server.sessionId, 'number');

  const ep = await s.resolveExposedPort(8000);
  // The daemon listens on its expose address (loopback), on a port the kernel picked.
  assert.equal(ep.host, EXPOSE_ADDRESS);
  assert.ok(Number.isInteger(ep.port) && ep.port > 0 && ep.port !== 8000, JSON.stringify(ep));
  assert.equal(ep.tls, false);
  assert.deepEqual(s.state.exposedPorts?.['8000'] ?? s.state.exposedPorts?.[8000], ep);

  let reply;
  let lastError;
  for (let i = 0; i < 50 && !reply; i++) {
    try {
      const r = await get(ep.host, ep.port, '/index.txt');
      if (r.status === 200) reply = r;
      else lastError = new Error(`status ${r.status}: ${r.body}`);
    } catch (e) {
      lastError = e; // the server is not listening yet
    }
    if (!reply) await new Promise((r) => setTimeout(r, 200));
  }
  assert.ok(reply, `no answer at ${ep.host}:${ep.port}: ${lastError}`);
  assert.equal(reply.body, `${token}\n`);

  // The same endpoint again (recorded in the state), and a port not exposed is still refused.
  assert.deepEqual(await s.resolveExposedPort(8000), ep);
  await assert.rejects(s.resolveExposedPort(8001), /does not expose port 8001 \(exposed: 8000\)/);

  // The server is one of the session's commands: stop() ends it, and the port answers no more.
  await s.stop();
  let stopped = false;
  for (let i = 0; i < 50 && !stopped; i++) {
    try {
      await get(ep.host, ep.port, '/index.txt');
      await new Promise((r) => setTimeout(r, 200));
    } catch {
      stopped = true;
    }
  }
  assert.ok(stopped, 'the exposed port still answers after stop()');
});

test('git_repo entries are cloned inside the sandbox through its egress policy', { skip: gitSkip }, async () => {
  const s = await make(
    new Manifest({
      entries: {
        'notes.txt': file({ content: 'placed\n' }),
        repo: gitRepo({ repo: GIT_URL, ref: 'main' }),
      },
    }),
    { network: 'proxy', egress: { allow: GIT_ALLOW } },
  );
  // Cloned at create, after the sandbox started, with the commit's files and history.
  assert.equal(await text(s, 'repo/README.txt'), GIT_README);
  assert.equal(await text(s, 'repo/sub/inner.txt'), GIT_INNER);
  assert.equal(await text(s, 'notes.txt'), 'placed\n');
  const log = await s.exec({ cmd: 'git -C repo log --format=%s -1 && git -C repo rev-parse --abbrev-ref HEAD', login: false });
  assert.equal(log.exitCode, 0, log.output);
  assert.equal(log.stdout, 'airlock test commit\nmain\n');
  assert.equal(await s.pathExists('repo.airlock-clone'), false);

  // A live entry with a subpath: only that directory of the repository lands at the path.
  await s.materializeEntry({ path: 'lib/inner', entry: gitRepo({ repo: GIT_URL, subpath: 'sub' }) });
  assert.equal(await text(s, 'lib/inner/inner.txt'), GIT_INNER);
  assert.equal(await s.pathExists('lib/inner/README.txt'), false);
  assert.equal(await s.pathExists('lib/inner.airlock-clone'), false);
  assert.ok('lib/inner' in s.state.manifest.entries);

  // A host the policy doesn't allow: the proxy refuses it (403), and the error says so.
  await assert.rejects(
    s.materializeEntry({ path: 'denied', entry: gitRepo({ repo: GIT_DENIED_URL }) }),
    (e) => {
      const url = GIT_DENIED_URL.replace(/[.*+?^${}()|[\]\\]/g, '\\$&');
      assert.match(e.message, new RegExp(`git clone of ${url} into /workspace/denied failed inside the sandbox \\(exit 128; the sandbox reaches the network only through its egress policy\\)`));
      assert.match(e.message, /403/);
      return true;
    },
  );
  assert.equal(await s.pathExists('denied'), false);
  assert.equal(await s.pathExists('denied.airlock-clone'), false);
  assert.equal(await text(s, 'repo/README.txt'), GIT_README); // the earlier clone is untouched
});

test('a git_repo entry the policy refuses fails create with the clear error, and the sandbox is destroyed', { skip: gitSkip }, async () => {
  const before = new Set((await client.connection.unary('List', { include_stopped: true })).sandboxes.map((x) => x.id));
  await assert.rejects(
    client.create({ manifest: new Manifest({ entries: { repo: gitRepo({ repo: GIT_DENIED_URL }) } }), options: { network: 'proxy', egress: { allow: GIT_ALLOW } } }),
    /git clone of .* into \/workspace\/repo failed inside the sandbox \(exit 128; the sandbox reaches the network only through its egress policy\).*403/s,
  );
  const left = (await client.connection.unary('List', { include_stopped: true })).sandboxes.filter((x) => !before.has(x.id));
  assert.deepEqual(left, []);
});
