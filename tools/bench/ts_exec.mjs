// session.exec of `true` through the airlock TypeScript client against the
// Agents SDK's own UnixLocalSandboxClient (which confines nothing): same
// process, interleaved, N runs each; median, p90 and the ratio.
//
// Run (needs root for airlockd; builds the client first):
//   cd harness/clients/typescript && npm ci && npm run build && cd - &&
//   sudo build/airlockd --socket /tmp/b/a.sock --state-dir /tmp/b/state &
//   AIRLOCK_SOCKET=/tmp/b/a.sock node tools/bench/ts_exec.mjs [N]
//
// Both sides run the SDK's exec_command defaults (a login shell, `bash -lc
// true`) and, as a second pair, a plain `sh -c true` (login: false) so the
// host's login scripts don't dominate. Also reported: one gRPC round trip
// (Get) and the daemon's Run of /bin/true, to show where airlock's time goes.
import { createRequire } from 'node:module';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';

const here = dirname(fileURLToPath(import.meta.url));
const pkg = join(here, '..', '..', 'harness', 'clients', 'typescript');
const req = createRequire(join(pkg, 'package.json'));
const { AirlockSandboxClient } = await import(join(pkg, 'dist', 'index.js'));
const { UnixLocalSandboxClient } = await import(req.resolve('@openai/agents/sandbox/local'));

const N = Number(process.argv[2] ?? 200);
const socket = process.env.AIRLOCK_SOCKET;
if (!socket) throw new Error('set AIRLOCK_SOCKET to a running airlockd socket');

function stats(ms) {
  const s = [...ms].sort((a, b) => a - b);
  const q = (p) => s[Math.min(s.length - 1, Math.floor(p * s.length))];
  return { median: q(0.5), p90: q(0.9) };
}

async function time(fn) {
  const t = process.hrtime.bigint();
  await fn();
  return Number(process.hrtime.bigint() - t) / 1e6;
}

const airlock = new AirlockSandboxClient({ socket });
const local = new UnixLocalSandboxClient();
const a = await airlock.create();
const l = await local.create();

const pairs = [
  ['exec_command defaults (bash -lc true)', { cmd: 'true' }],
  ['sh -c true (login: false)', { cmd: 'true', shell: '/bin/sh', login: false }],
];
try {
  for (const [name, args] of pairs) {
    for (let i = 0; i < 5; i++) {
      await a.exec(args);
      await l.exec(args);
    }
    const ta = [];
    const tl = [];
    for (let i = 0; i < N; i++) {
      // Interleaved, alternating which goes first.
      if (i % 2 === 0) {
        ta.push(await time(() => a.exec(args)));
        tl.push(await time(() => l.exec(args)));
      } else {
        tl.push(await time(() => l.exec(args)));
        ta.push(await time(() => a.exec(args)));
      }
    }
    const sa = stats(ta);
    const sl = stats(tl);
    console.log(`${name}, N=${N}`);
    console.log(`  airlock            median ${sa.median.toFixed(2)} ms  p90 ${sa.p90.toFixed(2)} ms`);
    console.log(`  UnixLocal          median ${sl.median.toFixed(2)} ms  p90 ${sl.p90.toFixed(2)} ms`);
    console.log(`  ratio airlock/UnixLocal  median ${(sa.median / sl.median).toFixed(2)}  p90 ${(sa.p90 / sl.p90).toFixed(2)}`);
  }
  // Where airlock's time goes.
  const rpc = airlock.connection;
  const id = a.sandboxId;
  const parts = {
    'gRPC round trip (Get)': () => rpc.unary('Get', { id }),
    'Run /bin/true (one RPC, the daemon runs it)': () => rpc.unary('Run', { command: { sandbox_id: id, argv: ['/bin/true'] } }),
    'Run /bin/sh -c true': () => rpc.unary('Run', { command: { sandbox_id: id, argv: ['/bin/sh', '-c', 'true'] } }),
    'StartProcessAndRead of /bin/sh -c true (exec\'s call)': async () => {
      let r = await rpc.unary('StartProcessAndRead', {
        start: { command: { sandbox_id: id, argv: ['/bin/sh', '-c', 'true'] }, stdin: true }, wait_ms: 10000 });
      while (!r.eof) {
        r = await rpc.unary('ReadProcessOutput', { process: { sandbox_id: id, process_id: r.process.process_id }, wait_ms: 10000 });
      }
    },
    'StartProcess + ReadProcessOutput of /bin/sh -c true': async () => {
      const p = await rpc.unary('StartProcess', { command: { sandbox_id: id, argv: ['/bin/sh', '-c', 'true'] }, stdin: true });
      for (;;) {
        const r = await rpc.unary('ReadProcessOutput', { process: { sandbox_id: id, process_id: p.process_id }, wait_ms: 10000 });
        if (r.eof) break;
      }
    },
  };
  console.log(`airlock breakdown, N=${N}`);
  for (const [name, fn] of Object.entries(parts)) {
    for (let i = 0; i < 5; i++) await fn();
    const t = [];
    for (let i = 0; i < N; i++) t.push(await time(fn));
    const s = stats(t);
    console.log(`  ${name.padEnd(52)} median ${s.median.toFixed(2)} ms  p90 ${s.p90.toFixed(2)} ms`);
  }
} finally {
  await a.delete();
  await l.delete();
  airlock.close();
}
