// The SDK's own SandboxAgent, with its default capabilities, on a real
// airlockd, driven by a scripted model (no network): exec_command,
// apply_patch, write_stdin to a PTY session, and the session resumed from
// serialized state (live, and after its sandbox was destroyed).
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { run } from '@openai/agents';
import { Capabilities, Manifest, SandboxAgent, file } from '@openai/agents/sandbox';
import { AirlockSandboxClient } from '../dist/index.js';
import { ScriptModel, SOCKET, call, patchCall, say, skip, text } from './helpers.mjs';

function sessionIdIn(output) {
  const m = /Process running with session ID (\d+)/.exec(output);
  assert.ok(m, `no session id in tool output:\n${output}`);
  return Number(m[1]);
}

test('SandboxAgent runs exec_command, apply_patch and write_stdin on airlock, then resumes', { skip, timeout: 120_000 }, async () => {
  const client = new AirlockSandboxClient({ socket: SOCKET, snapshots: true });
  const seen = {};
  let pty;
  const model = new ScriptModel([
    () => [call('exec_command', { cmd: 'echo hello > greeting.txt && cat greeting.txt && cat README.md && id -u' })],
    (req) => {
      seen.exec = ScriptModel.lastToolOutput(req);
      // What a Responses model emits for the apply_patch tool: one structured operation per call.
      return [
        patchCall({ type: 'create_file', path: 'notes.md', diff: '+line one\n+line two\n' }),
        patchCall({ type: 'update_file', path: 'greeting.txt', diff: '@@\n-hello\n+hello, airlock\n' }),
      ];
    },
    (req) => {
      seen.patch = ScriptModel.lastToolOutput(req);
      seen.patchStatus = req.input.filter((i) => i.type === 'apply_patch_call_output').map((i) => i.status).join(',') === 'completed,completed' ? 'completed' : 'failed';
      return [call('exec_command', { cmd: 'python3 -q', tty: true, yield_time_ms: 2000 })];
    },
    (req) => {
      seen.ptyStart = ScriptModel.lastToolOutput(req);
      pty = sessionIdIn(seen.ptyStart);
      return [call('write_stdin', { session_id: pty, chars: 'print(6 * 7)\n', yield_time_ms: 1500 })];
    },
    (req) => {
      seen.ptyWrite = ScriptModel.lastToolOutput(req);
      return [say('done')];
    },
  ]);
  const agent = new SandboxAgent({
    name: 'airlock-agent',
    instructions: 'Work in the sandbox.',
    model,
    capabilities: Capabilities.default(),
    defaultManifest: new Manifest({ entries: { 'README.md': file({ content: '# project\n' }) } }),
  });

  // Run 1: the session is created by the test and handed to the runner.
  const session = await client.create({ manifest: agent.defaultManifest });
  try {
    const result = await run(agent, 'start', { sandbox: { client, session }, maxTurns: 10 });
    assert.equal(result.finalOutput, 'done');

    assert.match(seen.exec, /Process exited with code 0/);
    assert.match(seen.exec, /hello\n# project\n0/);
    assert.match(seen.patch, /greeting\.txt/, seen.patch);
    assert.equal(seen.patchStatus, 'completed');
    assert.match(seen.ptyStart, /Process running with session ID/);
    assert.match(seen.ptyWrite, /42/, seen.ptyWrite);
    assert.match(seen.ptyWrite, /Process running with session ID/);

    // What the sandbox holds, read back through the API.
    assert.equal(await text(session, 'greeting.txt'), 'hello, airlock\n');
    assert.equal(await text(session, 'notes.md'), 'line one\nline two\n');

    // Serialize the session state (JSON), deserialize it and run again with
    // it: the runner resumes the live sandbox, whose PTY session still runs.
    const blob = JSON.stringify(await client.serializeSessionState(session.state));
    const firstId = session.state.sandboxId;
    const model2 = new ScriptModel([
      () => [call('write_stdin', { session_id: pty, chars: 'print(open("greeting.txt").read().upper())\n', yield_time_ms: 1500 })],
      (req) => {
        seen.resumedPty = ScriptModel.lastToolOutput(req);
        return [call('write_stdin', { session_id: pty, chars: 'exit()\n', yield_time_ms: 3000 })];
      },
      (req) => {
        seen.ptyExit = ScriptModel.lastToolOutput(req);
        return [call('exec_command', { cmd: 'echo resumed >> notes.md && hostname' })];
      },
      () => [say('resumed')],
    ]);
    const agent2 = agent.clone({ model: model2 });
    const state2 = await client.deserializeSessionState(JSON.parse(blob));
    const result2 = await run(agent2, 'continue', { sandbox: { client, sessionState: state2 }, maxTurns: 10 });
    assert.equal(result2.finalOutput, 'resumed');
    assert.match(seen.resumedPty, /HELLO, AIRLOCK/, seen.resumedPty);
    assert.match(seen.ptyExit, /Process exited with code 0/, seen.ptyExit);
    // The runner owned the resumed session and cleaned it up: the sandbox is gone.
    await assert.rejects(client.connection.unary('Get', { id: firstId }), /NOT_FOUND/);

    // Resume the same serialized state once more: its sandbox is gone, so
    // the snapshot taken at serialization is restored into a new one.
    const model3 = new ScriptModel([
      () => [call('exec_command', { cmd: 'cat greeting.txt notes.md' })],
      (req) => {
        seen.restored = ScriptModel.lastToolOutput(req);
        return [say('restored')];
      },
    ]);
    const state3 = await client.deserializeSessionState(JSON.parse(blob));
    const result3 = await run(agent.clone({ model: model3 }), 'again', { sandbox: { client, sessionState: state3 }, maxTurns: 5 });
    assert.equal(result3.finalOutput, 'restored');
    // The snapshot is of the moment of serialization: before run 2 appended "resumed".
    assert.match(seen.restored, /hello, airlock\nline one\nline two\n/);
    assert.doesNotMatch(seen.restored, /resumed/);
    await client.delete(state3);
  } finally {
    await session.delete().catch(() => undefined);
    client.close();
  }
});
