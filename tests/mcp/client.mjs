#!/usr/bin/env node
// Drives `airlock mcp` with the official MCP TypeScript SDK client, over
// stdio (StdioClientTransport spawning the server) and over Streamable HTTP
// (StreamableHTTPClientTransport with the bearer token), against a real
// airlockd. Prints one JSON object per line: {"transport", "step", ...}, the
// tool results as the SDK returned them; tests/daemon/test_mcp.py asserts on
// them. Exits non-zero with a message on stderr when a step can't run.
//
//   node client.mjs --airlock BUILD/airlock --socket SOCK [--transport stdio|http|both]
//                   [--foreign ID] [-- CREATE OPTIONS FOR airlock mcp...]
import { spawn } from "node:child_process";
import { Client } from "@modelcontextprotocol/sdk/client/index.js";
import { StdioClientTransport } from "@modelcontextprotocol/sdk/client/stdio.js";
import { StreamableHTTPClientTransport } from "@modelcontextprotocol/sdk/client/streamableHttp.js";

function parseArgs(argv) {
  const o = { transport: "both", extra: [] };
  for (let i = 0; i < argv.length; i++) {
    const a = argv[i];
    if (a === "--") { o.extra = argv.slice(i + 1); break; }
    const v = argv[++i];
    if (v === undefined) die(`${a}: needs a value`);
    if (a === "--airlock") o.airlock = v;
    else if (a === "--socket") o.socket = v;
    else if (a === "--transport") o.transport = v;
    else if (a === "--foreign") o.foreign = v;
    else die(`unknown option ${a}`);
  }
  if (!o.airlock || !o.socket) die("usage: client.mjs --airlock PATH --socket SOCK [--transport stdio|http|both]");
  return o;
}

function die(msg) {
  process.stderr.write(`client.mjs: ${msg}\n`);
  process.exit(1);
}

function emit(transport, step, data) {
  process.stdout.write(JSON.stringify({ transport, step, ...data }) + "\n");
}

const text = (r) => (r.content ?? []).filter((c) => c.type === "text").map((c) => c.text).join("");

// Calls a tool; tool errors come back as results (isError), never throws
// for them. A protocol error is recorded as {protocolError}.
async function call(client, name, args) {
  try {
    const r = await client.callTool({ name, arguments: args });
    return { isError: !!r.isError, text: text(r), structured: r.structuredContent ?? null, content: r.content };
  } catch (e) {
    return { protocolError: String(e.message ?? e), code: e.code ?? null };
  }
}

async function scenario(client, t, opts) {
  const tools = await client.listTools();
  emit(t, "list_tools", { names: tools.tools.map((x) => x.name), tools: tools.tools });

  const created = await call(client, "create_sandbox", {});
  emit(t, "create_sandbox", created);
  if (created.isError || created.protocolError) die(`${t}: create_sandbox failed: ${JSON.stringify(created)}`);
  const id = created.structured.sandbox_id;
  const S = (extra) => ({ sandbox_id: id, ...extra });

  emit(t, "list_sandboxes", await call(client, "list_sandboxes", {}));
  emit(t, "exec_echo", await call(client, "exec_command", S({ cmd: "echo hi; echo oops >&2; exit 3" })));
  emit(t, "exec_pwd", await call(client, "exec_command", S({ cmd: "mkdir -p sub && cd sub && pwd", workdir: "." })));

  // A command that outlives yield_time_ms: a session, then write_stdin waits for it.
  const slow = await call(client, "exec_command", S({ cmd: "echo started; sleep 1.5; echo finished", yield_time_ms: 200 }));
  emit(t, "exec_slow", slow);
  if (slow.structured?.session_id) {
    emit(t, "write_stdin_wait", await call(client, "write_stdin", { session_id: slow.structured.session_id, yield_time_ms: 10000 }));
  }
  // Interactive: tty, type a line into it.
  const tty = await call(client, "exec_command", S({ cmd: "read line; echo got:$line", tty: true, yield_time_ms: 500 }));
  emit(t, "exec_tty", tty);
  if (tty.structured?.session_id) {
    const sid = tty.structured.session_id;
    emit(t, "write_stdin_tty", await call(client, "write_stdin", { session_id: sid, chars: "hello\n", yield_time_ms: 5000 }));
  }
  // A non-tty session refuses typed input; kill_session ends it.
  const sleeper = await call(client, "exec_command", S({ cmd: "sleep 60", yield_time_ms: 0 }));
  emit(t, "exec_sleeper", sleeper);
  if (sleeper.structured?.session_id) {
    const sid = sleeper.structured.session_id;
    emit(t, "write_stdin_no_tty", await call(client, "write_stdin", { session_id: sid, chars: "x" }));
    emit(t, "kill_session", await call(client, "kill_session", { session_id: sid }));
    emit(t, "write_stdin_gone", await call(client, "write_stdin", { session_id: sid }));
  }
  emit(t, "exec_big", await call(client, "exec_command", S({ cmd: "seq 1 100000", max_output_bytes: 1000 })));

  const patch = [
    "*** Begin Patch",
    "*** Add File: notes/hello.txt",
    "+hello from apply_patch",
    "+the needle is here",
    "*** End Patch",
  ].join("\n");
  emit(t, "apply_patch", await call(client, "apply_patch", S({ patch })));
  emit(t, "read_file", await call(client, "read_file", S({ path: "notes/hello.txt" })));
  emit(t, "read_file_range", await call(client, "read_file", S({ path: "notes/hello.txt", start_line: 2, max_lines: 1 })));
  emit(t, "write_file", await call(client, "write_file", S({ path: "deep/er/file.txt", content: "written\n" })));
  emit(t, "cat_written", await call(client, "exec_command", S({ cmd: "cat deep/er/file.txt" })));
  emit(t, "list_dir", await call(client, "list_dir", S({})));
  emit(t, "search", await call(client, "search", S({ pattern: "needle" })));
  emit(t, "search_files", await call(client, "search", S({ pattern: "needle", files_with_matches: true })));
  await call(client, "write_file", S({ path: "AGENTS.md", content: "Be brief.\n" }));
  await call(client, "write_file", S({ path: "sub/AGENTS.md", content: "Tabs, not spaces.\n" }));
  emit(t, "get_instructions", await call(client, "get_instructions", S({ workdir: "sub" })));
  // A 1x1 PNG, made inside, read back as image content.
  const png = "iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR42mNk+M9QDwADhgGAWjR9awAAAABJRU5ErkJggg==";
  await call(client, "exec_command", S({ cmd: `echo ${png} | base64 -d > pixel.png` }));
  emit(t, "view_image", { ...(await call(client, "view_image", S({ path: "pixel.png" }))), expected: png });
  emit(t, "exec_hostname", await call(client, "exec_command", S({ cmd: "hostname" })));

  // Bad arguments: tool errors naming the argument.
  emit(t, "bad_type", await call(client, "exec_command", S({ cmd: 5 })));
  emit(t, "bad_unknown", await call(client, "read_file", S({ path: "x", host_path: "/etc/passwd" })));
  emit(t, "bad_missing", await call(client, "read_file", { path: "notes/hello.txt" }));
  emit(t, "bad_range", await call(client, "exec_command", S({ cmd: "true", yield_time_ms: -5 })));
  emit(t, "bad_sandbox", await call(client, "read_file", { sandbox_id: "no-such-sandbox", path: "x" }));
  if (opts.foreign) emit(t, "foreign_sandbox", await call(client, "exec_command", { sandbox_id: opts.foreign, cmd: "id" }));

  // Every way at a host path: refused as a tool error.
  const host = {
    read_abs: ["read_file", S({ path: "/etc/shadow" })],
    read_dotdot: ["read_file", S({ path: "../../etc/passwd" })],
    read_proc_root: ["read_file", S({ path: "/proc/1/root/etc/passwd" })],
    read_sneaky: ["read_file", S({ path: "notes/../../../etc/passwd" })],
    write_abs: ["write_file", S({ path: "/etc/evil", content: "x" })],
    write_dotdot: ["write_file", S({ path: "../evil", content: "x" })],
    list_root: ["list_dir", S({ path: "/" })],
    search_etc: ["search", S({ pattern: "root", path: "/etc" })],
    image_abs: ["view_image", S({ path: "/usr/share/pixmaps/debian-logo.png" })],
    exec_workdir: ["exec_command", S({ cmd: "pwd", workdir: "/etc" })],
    instructions_root: ["get_instructions", S({ workdir: "/" })],
    patch_abs: ["apply_patch", S({ patch: "*** Begin Patch\n*** Add File: /etc/evil\n+x\n*** End Patch" })],
    patch_dotdot: ["apply_patch", S({ patch: "*** Begin Patch\n*** Add File: ../../evil\n+x\n*** End Patch" })],
    skill_dotdot: ["read_skill_file", { name: "x", path: "../../../etc/passwd" }],
    skill_name: ["get_skill", { name: "../etc" }],
  };
  for (const [step, [name, args]] of Object.entries(host)) emit(t, `host_${step}`, await call(client, name, args));

  emit(t, "destroy_sandbox", await call(client, "destroy_sandbox", S({})));
  emit(t, "after_destroy", await call(client, "exec_command", S({ cmd: "true" })));
  emit(t, "list_after", await call(client, "list_sandboxes", {}));
}

async function viaStdio(opts) {
  const transport = new StdioClientTransport({
    command: opts.airlock,
    args: ["mcp", "--socket", opts.socket, ...opts.extra],
    stderr: "pipe",
  });
  let log = "";
  transport.stderr?.on("data", (d) => { log += d; });
  const client = new Client({ name: "airlock-tests", version: "1.0.0" });
  await client.connect(transport);
  emit("stdio", "initialized", { server: client.getServerVersion(), instructions: client.getInstructions() ?? null });
  await scenario(client, "stdio", opts);
  await client.close();
  emit("stdio", "closed", { stderr: log });
}

// Starts `airlock mcp --http 127.0.0.1:0`; resolves with its URL and token
// from its stderr lines.
function startHttpServer(opts) {
  const child = spawn(opts.airlock, ["mcp", "--socket", opts.socket, "--http", "127.0.0.1:0", ...opts.extra], {
    stdio: ["ignore", "ignore", "pipe"],
  });
  let log = "";
  return new Promise((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error(`no "listening on" line in 20 s: ${log}`)), 20000);
    // (removeAllListeners("exit") would take Node's own listener too.)
    const early = (code) => reject(new Error(`airlock mcp --http exited with ${code}: ${log}`));
    child.on("exit", early);
    child.stderr.on("data", (d) => {
      log += d;
      const url = /airlock mcp: listening on (\S+)/.exec(log);
      const token = /airlock mcp: token ([0-9a-f]{64})\n/.exec(log);
      if (url && token) {
        clearTimeout(timer);
        child.removeListener("exit", early);
        resolve({ child, url: url[1], token: token[1], log: () => log });
      }
    });
  });
}

async function viaHttp(opts) {
  const server = await startHttpServer(opts);
  const t = "http";
  try {
    const init = JSON.stringify({ jsonrpc: "2.0", id: 1, method: "initialize",
      params: { protocolVersion: "2025-06-18", capabilities: {}, clientInfo: { name: "raw", version: "1" } } });
    const headers = { "content-type": "application/json", accept: "application/json, text/event-stream" };
    const noToken = await fetch(server.url, { method: "POST", headers, body: init });
    emit(t, "no_token", { status: noToken.status, body: await noToken.text() });
    const wrong = await fetch(server.url, { method: "POST", headers: { ...headers, authorization: "Bearer " + "0".repeat(64) }, body: init });
    emit(t, "wrong_token", { status: wrong.status, body: await wrong.text() });
    const evil = await fetch(server.url, { method: "POST", headers: { ...headers, authorization: `Bearer ${server.token}`, origin: "http://evil.example" }, body: init });
    emit(t, "bad_origin", { status: evil.status, body: await evil.text() });
    const get = await fetch(server.url, { headers: { authorization: `Bearer ${server.token}` } });
    emit(t, "get", { status: get.status });

    const transport = new StreamableHTTPClientTransport(new URL(server.url), {
      requestInit: { headers: { Authorization: `Bearer ${server.token}` } },
    });
    const client = new Client({ name: "airlock-tests", version: "1.0.0" });
    await client.connect(transport);
    emit(t, "initialized", { server: client.getServerVersion(), session: transport.sessionId ?? null,
                             protocol: transport.protocolVersion ?? null });
    await scenario(client, t, opts);
    await transport.terminateSession();
    await client.close();
  } finally {
    server.child.kill("SIGTERM");
    const code = await new Promise((r) => server.child.on("exit", (c) => r(c)));
    emit(t, "closed", { exit: code, stderr: server.log().replace(/token [0-9a-f]{64}/, "token <redacted>") });
  }
}

const opts = parseArgs(process.argv.slice(2));
try {
  if (opts.transport === "stdio" || opts.transport === "both") await viaStdio(opts);
  if (opts.transport === "http" || opts.transport === "both") await viaHttp(opts);
} catch (e) {
  die(e.stack ?? String(e));
}
