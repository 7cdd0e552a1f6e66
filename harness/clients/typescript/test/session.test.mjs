// Each SandboxClient / SandboxSession method of the airlock client against a
// real airlockd: what it does to the sandbox, read back through the API, and
// the errors it gives.
import { test, after } from 'node:test';
import assert from 'node:assert/strict';
import { mkdirSync, mkdtempSync, readFileSync, writeFileSync, existsSync } from 'node:fs';
import { join } from 'node:path';
import {
  Manifest, SandboxExposedPortUnavailableError, SandboxUnsupportedFeatureError,
  dir, file, gitRepo, localDir, localFile, mount, s3Mount, gcsMount, azureBlobMount,
  inContainerMountStrategy, dockerVolumeMountStrategy, localBindMountStrategy,
} from '@openai/agents/sandbox';
import { AirlockSandboxClient, AirlockError } from '../dist/index.js';
import { ALLOWED, SOCKET, skip, text } from './helpers.mjs';
import { TarWriter, listTar } from '../dist/tar.js';

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

const PNG = Buffer.from(
  '89504e470d0a1a0a0000000d49484452000000010000000108060000001f15c4890000000d49444154789c6360000002000154a24f5d0000000049454e44ae426082',
  'hex',
);

test('create places inline files, directories, environment and users', { skip }, async () => {
  const s = await make(new Manifest({
    entries: {
      'a.txt': file({ content: 'alpha\n' }),
      'run.sh': file({ content: '#!/bin/sh\necho ran\n', permissions: '-rwxr-x---' }),
      src: dir({ children: { 'main.py': file({ content: 'print(1)\n' }), empty: dir() } }),
    },
    environment: { GREETING: 'hi there' },
    users: ['alice'],
  }));
  assert.equal(await text(s, 'a.txt'), 'alpha\n');
  assert.equal(await text(s, '/workspace/src/main.py'), 'print(1)\n');
  assert.ok(await s.directoryExists('src/empty'));
  const r = await s.exec({ cmd: 'stat -c %a run.sh && ./run.sh && echo "$GREETING"' });
  assert.equal(r.exitCode, 0, r.output);
  assert.equal(r.stdout, '750\nran\nhi there\n');
  const who = await s.exec({ cmd: 'id -un; id -u', runAs: 'alice', login: false });
  assert.equal(who.stdout, 'alice\n2000\n');
});

test('local files and directories under an allowed root are copied in; local_bind mounts are bound', { skip: skip || (!ALLOWED && 'AIRLOCK_ALLOWED_DIR is not set') }, async () => {
  const base = mkdtempSync(join(ALLOWED, 'ts-'));
  writeFileSync(join(base, 'one.txt'), 'one\n');
  mkdirSync(join(base, 'tree/sub'), { recursive: true });
  writeFileSync(join(base, 'tree/sub/two.txt'), 'two\n');
  mkdirSync(join(base, 'ro'));
  writeFileSync(join(base, 'ro/r.txt'), 'read only\n');
  mkdirSync(join(base, 'out'));
  const s = await make(new Manifest({
    entries: {
      'one.txt': localFile({ src: join(base, 'one.txt') }),
      tree: localDir({ src: join(base, 'tree') }),
      ro: mount({ source: join(base, 'ro'), mountStrategy: localBindMountStrategy() }),
      out: mount({ source: join(base, 'out'), mountStrategy: localBindMountStrategy(), readOnly: false }),
    },
  }));
  assert.equal(await text(s, 'one.txt'), 'one\n');
  assert.equal(await text(s, 'tree/sub/two.txt'), 'two\n');
  assert.equal(await text(s, 'ro/r.txt'), 'read only\n');
  const w = await s.exec({ cmd: 'echo x > ro/new; echo made > out/result.txt' });
  assert.match(w.stderr, /Read-only file system/);
  assert.equal(readFileSync(join(base, 'out/result.txt'), 'utf8'), 'made\n');
  // The copy is a copy: the host file is untouched by writes inside.
  await s.exec({ cmd: 'echo changed > one.txt' });
  assert.equal(readFileSync(join(base, 'one.txt'), 'utf8'), 'one\n');
});

test('a host path outside the allowed roots is refused by the daemon, naming it', { skip }, async () => {
  await assert.rejects(
    client.create({ manifest: new Manifest({ entries: { 'passwd': localFile({ src: '/etc/passwd' }) } }) }),
    (e) => e instanceof AirlockError && /\/etc\/passwd/.test(e.message) && /allowed|root/i.test(e.message),
  );
});

test('entries airlock does not support are refused, naming the entry and why', { skip }, async () => {
  const cases = [
    ['bucket', s3Mount({ bucket: 'b', accessKeyId: 'AKIA', secretAccessKey: 's' }), /bucket.*s3_mount.*credentials/s],
    ['gcs', gcsMount({ bucket: 'b' }), /"gcs".*gcs_mount.*credentials/s],
    ['blob', azureBlobMount({ container: 'c' }), /"blob".*credentials/s],
    ['fuse', mount({ source: '/tmp', mountStrategy: inContainerMountStrategy({ pattern: { type: 'fuse' } }) }), /"fuse".*FUSE/s],
    ['vol', mount({ source: 'v', mountStrategy: dockerVolumeMountStrategy() }), /"vol".*docker_volume/s],
    ['owned', file({ content: 'x', group: { name: 'staff' } }), /"owned".*group/s],
  ];
  const count = async () => (await client.connection.unary('List', { labels: {}, include_stopped: true })).sandboxes.length;
  const before = await count();
  for (const [path, entry, re] of cases) {
    await assert.rejects(client.create({ manifest: new Manifest({ entries: { [path]: entry } }) }), (e) => {
      assert.ok(e instanceof SandboxUnsupportedFeatureError, `${path}: ${e}`);
      assert.match(e.message, re);
      return true;
    });
  }
  // Nothing was created for them.
  assert.equal(await count(), before);
});

test('exec: status, streams, workdir, yield into a session, ^C, unknown session', { skip }, async () => {
  const s = await make(new Manifest({ entries: { sub: dir() } }));
  const r = await s.exec({ cmd: 'echo out; echo err >&2; pwd; exit 7', workdir: 'sub' });
  assert.equal(r.exitCode, 7);
  assert.equal(r.stdout, 'out\n/workspace/sub\n');
  assert.equal(r.stderr, 'err\n');
  assert.match(await s.execCommand({ cmd: 'echo formatted' }), /Process exited with code 0\n.*formatted/s);
  const missing = await s.exec({ cmd: 'exec /no/such/binary', login: false });
  assert.equal(missing.exitCode, 127);

  const slow = await s.exec({ cmd: 'echo started; sleep 30', yieldTimeMs: 300 });
  assert.equal(slow.exitCode, undefined);
  assert.equal(typeof slow.sessionId, 'number');
  assert.equal(slow.stdout, 'started\n');
  const interrupted = await s.writeStdin({ sessionId: slow.sessionId, chars: '\u0003', yieldTimeMs: 3000 });
  assert.match(interrupted, /Process exited with code 130/);
  assert.match(await s.writeStdin({ sessionId: slow.sessionId, chars: 'x' }), /session not found/);

  const reader = await s.exec({ cmd: 'read line; echo "got $line"', yieldTimeMs: 200 });
  const done = await s.writeStdin({ sessionId: reader.sessionId, chars: 'abc\n', yieldTimeMs: 3000 });
  assert.match(done, /Process exited with code 0[\s\S]*got abc/);
});

test('PTY sessions: a terminal, input echoed, ^C through the line discipline', { skip }, async () => {
  const s = await make();
  const r = await s.exec({ cmd: 'tty; stty size; cat', tty: true, yieldTimeMs: 800 });
  assert.equal(typeof r.sessionId, 'number', r.output);
  assert.match(r.output, /\/dev\/pts\/\d+/);
  assert.match(r.output, /24 80/);
  const echoed = await s.writeStdin({ sessionId: r.sessionId, chars: 'ping\n', yieldTimeMs: 800 });
  assert.match(echoed, /ping\r?\n(.|\n)*ping/);
  const stopped = await s.writeStdin({ sessionId: r.sessionId, chars: '\u0003', yieldTimeMs: 3000 });
  assert.match(stopped, /Process exited with code 130/);
});

test('readFile, listDir, pathExists, directoryExists, viewImage', { skip }, async () => {
  const s = await make(new Manifest({ entries: { 'f.txt': file({ content: '0123456789' }), d: dir({ children: { x: file({ content: '' }) } }) } }));
  assert.equal(Buffer.from(await s.readFile({ path: 'f.txt', maxBytes: 4 })).toString(), '0123');
  const list = await s.listDir({ path: '.' });
  assert.deepEqual(list.map((e) => [e.name, e.type]).sort(), [['d', 'dir'], ['f.txt', 'file']]);
  assert.deepEqual(await s.listDir({ path: 'd' }), [{ name: 'x', path: 'd/x', type: 'file' }]);
  assert.equal(await s.pathExists('f.txt'), true);
  assert.equal(await s.pathExists('nope'), false);
  assert.equal(await s.directoryExists('d'), true);
  assert.equal(await s.directoryExists('f.txt'), false);
  await assert.rejects(s.readFile({ path: 'nope' }), (e) => e instanceof AirlockError && e.code === 'NOT_FOUND');
  // Outside the workspace without a grant: refused before any call.
  await assert.rejects(s.readFile({ path: '/etc/passwd' }), /workspace|escape|must stay/i);

  await s.materializeEntry({ path: 'pic.png', entry: file({ content: new Uint8Array(PNG) }) });
  const img = await s.viewImage({ path: 'pic.png' });
  assert.equal(img.type, 'image');
  assert.match(JSON.stringify(img), /image\/png/);
  await assert.rejects(s.viewImage({ path: 'none.png' }), /Image file not found: none\.png/);
});

test('materializeEntry and applyManifest on a running sandbox', { skip }, async () => {
  const s = await make();
  await s.materializeEntry({ path: 'm/a.txt', entry: file({ content: 'A' }) });
  await s.materializeEntry({ path: 'tree', entry: dir({ children: { b: file({ content: 'B' }), c: dir({ children: { d: file({ content: 'D' }) } }) } }) });
  assert.equal(await text(s, 'm/a.txt'), 'A');
  assert.equal(await text(s, 'tree/c/d'), 'D');
  assert.ok('tree' in s.state.manifest.entries);

  // A host directory (the client reads it: the API has no live host copy).
  const host = mkdtempSync('/tmp/airlock-ts-src-');
  mkdirSync(join(host, 'skill'));
  writeFileSync(join(host, 'skill/SKILL.md'), '---\nname: x\n---\nbody\n');
  await s.materializeEntry({ path: 'skills', entry: localDir({ src: host }) });
  assert.equal(await text(s, 'skills/skill/SKILL.md'), '---\nname: x\n---\nbody\n');

  await assert.rejects(
    s.materializeEntry({ path: 'late', entry: mount({ source: '/tmp', mountStrategy: localBindMountStrategy() }) }),
    /mount.*created/,
  );
  await assert.rejects(
    s.materializeEntry({ path: 'repo', entry: gitRepo({ repo: 'openai/codex' }) }),
    /git clone of https:\/\/github\.com\/openai\/codex\.git.*network "none"/s,
  );

  await s.applyManifest(new Manifest({ entries: { 'added.txt': file({ content: 'added' }) }, environment: { ADDED: 'yes' } }));
  assert.equal(await text(s, 'added.txt'), 'added');
  assert.equal((await s.exec({ cmd: 'echo $ADDED' })).stdout, 'yes\n');
  await assert.rejects(s.applyManifest(new Manifest({ users: ['bob'] })), /users \(bob\) can only be given when the sandbox is created/);
});

test('apply_patch through the Editor: create, update, move, delete, and a hunk that does not match', { skip }, async () => {
  const s = await make(new Manifest({ entries: { 'code.py': file({ content: 'def f():\n    return 1\n' }) } }));
  const ed = s.createEditor();
  await ed.createFile({ type: 'create_file', path: 'new.txt', diff: '+first\n+second\n' });
  assert.equal(await text(s, 'new.txt'), 'first\nsecond\n');
  const u = await ed.updateFile({ type: 'update_file', path: 'code.py', diff: '@@ def f():\n-    return 1\n+    return 2\n' });
  assert.equal(u.status, 'completed');
  assert.equal(await text(s, 'code.py'), 'def f():\n    return 2\n');
  await ed.updateFile({ type: 'update_file', path: 'new.txt', diff: ' first\n-second\n+third\n', moveTo: 'moved/new.txt' });
  assert.equal(await text(s, 'moved/new.txt'), 'first\nthird\n');
  assert.equal(await s.pathExists('new.txt'), false);
  await ed.deleteFile({ type: 'delete_file', path: '/workspace/moved/new.txt' });
  assert.equal(await s.pathExists('moved/new.txt'), false);
  await assert.rejects(
    ed.updateFile({ type: 'update_file', path: 'code.py', diff: '@@\n-    return 99\n+    return 3\n' }),
    (e) => e instanceof AirlockError && /code\.py/.test(e.message) && /return 99/.test(e.message),
  );
  assert.equal(await text(s, 'code.py'), 'def f():\n    return 2\n');
  await assert.rejects(ed.createFile({ type: 'create_file', path: '../escape.txt', diff: '+x\n' }), /workspace|escape/i);
});

test('persistWorkspace and hydrateWorkspace as tar, with ephemeral entries and archive limits', { skip }, async () => {
  const s = await make(new Manifest({ entries: { 'keep.txt': file({ content: 'keep' }), cache: dir({ ephemeral: true, children: { c: file({ content: 'c' }) } }) } }));
  await s.exec({ cmd: 'mkdir -p lib && echo made > lib/m.txt && ln -s keep.txt link' });
  const tar = await s.persistWorkspace();
  const names = listTar(tar).map((m) => m.name).sort();
  assert.deepEqual(names, ['keep.txt', 'lib', 'lib/m.txt', 'link']);

  await s.exec({ cmd: 'rm -rf lib keep.txt && echo junk > junk.txt' });
  await s.hydrateWorkspace(tar);
  assert.equal(await text(s, 'keep.txt'), 'keep');
  assert.equal(await text(s, 'lib/m.txt'), 'made\n');
  assert.equal(await s.pathExists('junk.txt'), false);
  assert.equal((await s.exec({ cmd: 'readlink link' })).stdout, 'keep.txt\n');
  assert.equal(await text(s, 'cache/c'), 'c'); // ephemeral entries are left alone

  await assert.rejects(s.hydrateWorkspace(tar, { archiveLimits: { maxMembers: 2 } }), /4 members, over the limit of 2/);
  await assert.rejects(s.hydrateWorkspace(tar, { archiveLimits: { maxInputBytes: 100 } }), /over the limit of 100/);
  await assert.rejects(s.hydrateWorkspace(new Uint8Array(1024).fill(7)), /not a valid tar/);
  const w = new TarWriter();
  w.file('cache/evil', Buffer.from('x'));
  await assert.rejects(s.hydrateWorkspace(w.finish()), /"cache\/evil", a mount or ephemeral path/);
  const up = new TarWriter();
  up.file('../outside', Buffer.from('x'));
  await assert.rejects(s.hydrateWorkspace(up.finish()), (e) => e instanceof AirlockError && /upload\.tar/.test(e.message));
});

test('resolveExposedPort: a port that is not exposed is a clear error', { skip }, async () => {
  const s = await make();
  await assert.rejects(s.resolveExposedPort(8000), (e) => {
    assert.ok(e instanceof SandboxExposedPortUnavailableError, String(e));
    assert.match(e.message, /does not expose port 8000 \(exposed: none\)/);
    return true;
  });
  await assert.rejects(client.create({ options: { exposedPorts: [8000] } }), /needs network "proxy"/);
});

test('serialize, deserialize, resume (live and gone), delete', { skip }, async () => {
  const s = await make(new Manifest({ entries: { 'x.txt': file({ content: 'x' }) } }));
  const pty = await s.exec({ cmd: 'cat', tty: true, yieldTimeMs: 300 });
  const blob = JSON.parse(JSON.stringify(await client.serializeSessionState(s.state)));
  assert.equal(blob.sandboxId, s.sandboxId);
  assert.equal(blob.snapshotId, null); // not created with snapshots
  const state = await client.deserializeSessionState(blob);
  assert.ok(state.manifest instanceof Manifest);
  assert.ok('x.txt' in state.manifest.entries);

  const again = await client.resume(state);
  assert.equal(again.sandboxId, s.sandboxId);
  const echoed = await again.writeStdin({ sessionId: pty.sessionId, chars: 'still here\n', yieldTimeMs: 500 });
  assert.match(echoed, /still here/);

  // Gone and no snapshot: built again from the manifest, under a new id.
  await client.delete(state);
  await assert.rejects(s.exec({ cmd: 'true' }), (e) => e instanceof AirlockError && e.code === 'NOT_FOUND');
  const rebuilt = await client.resume(await client.deserializeSessionState(blob));
  sessions.push(rebuilt);
  assert.notEqual(rebuilt.sandboxId, s.sandboxId);
  assert.equal(await text(rebuilt, 'x.txt'), 'x');
  assert.match(await rebuilt.writeStdin({ sessionId: pty.sessionId, chars: 'x' }), /session not found/);
  assert.equal(await rebuilt.running(), true);
  await rebuilt.delete();
  assert.equal(await rebuilt.running(), false);

  await assert.rejects(client.deserializeSessionState({ manifest: {} }), /no sandboxId/);
});

test('an unreachable daemon is an AirlockError naming the call', { skip }, async () => {
  const c = new AirlockSandboxClient({ socket: '/nonexistent/airlockd.sock' });
  await assert.rejects(c.create(), (e) => e instanceof AirlockError && e.code === 'UNAVAILABLE' && /^Create: /.test(e.message));
  c.close();
  assert.ok(!existsSync('/nonexistent'));
});
