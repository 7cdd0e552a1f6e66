"""`airlock mcp` (issue 7): the agent's tools and the sandbox lifecycle as an
MCP server, driven by the official TypeScript SDK client
(@modelcontextprotocol/sdk, tests/mcp/client.mjs) over stdio and Streamable
HTTP against the real airlockd of this session; plus the transport's edges
(stdio framing, the token file, TLS, loopback-only without TLS) driven
directly."""

from __future__ import annotations

import base64
import http.client
import json
import os
import re
import shutil
import ssl
import subprocess
import time
from pathlib import Path
from typing import Iterator

import pytest

from conftest import BUILD, REPO

MCP_DIR = REPO / "tests" / "mcp"
AIRLOCK = BUILD / "airlock"
HOSTNAME = "mcp-box"  # an operator option: what the sandboxes the model creates get


def airlock_mcp(daemon, *args: str) -> list[str]:
    return [str(AIRLOCK), "mcp", "--socket", daemon.socket, *args]


def mcp_sandboxes(client) -> list[str]:
    return [s.id for s in client.list(labels={"airlock.mcp": "1"}, include_stopped=True)]


# --- through the TypeScript SDK ---------------------------------------------------


@pytest.fixture(scope="module")
def sdk_run(daemon, client) -> Iterator[dict]:
    """Runs client.mjs over both transports once; {(transport, step): result}."""
    if shutil.which("node") is None:
        pytest.skip("node is not installed (tools/setup.sh installs nodejs)")
    if not (MCP_DIR / "node_modules" / "@modelcontextprotocol" / "sdk").is_dir():
        pytest.skip("tests/mcp/node_modules is missing: run `npm ci` in tests/mcp (tools/setup.sh does)")
    if not AIRLOCK.exists():
        pytest.fail(f"{AIRLOCK} not built")
    foreign = client.create(labels={"test": "mcp-foreign"})  # not MCP's: the tools must not touch it
    try:
        r = subprocess.run(["node", str(MCP_DIR / "client.mjs"), "--airlock", str(AIRLOCK), "--socket", daemon.socket,
                            "--transport", "both", "--foreign", foreign.id, "--",
                            "--hostname", HOSTNAME, "--label", "test=mcp", "--lifetime", "10m"],
                           cwd=MCP_DIR, capture_output=True, text=True, timeout=300)
        assert r.returncode == 0, f"client.mjs failed ({r.returncode}):\n{r.stderr}\n{r.stdout[-3000:]}"
        results = {}
        for line in r.stdout.splitlines():
            d = json.loads(line)
            results[(d.pop("transport"), d.pop("step"))] = d
        # The foreign sandbox is untouched and still answers.
        assert foreign.exec("echo still here").stdout == b"still here\n"
        yield results
    finally:
        foreign.delete()


TRANSPORTS = ["stdio", "http"]


def ok(results, transport, step) -> dict:
    r = results[(transport, step)]
    assert "protocolError" not in r, r
    assert r["isError"] is False, r
    return r


def tool_error(results, transport, step) -> str:
    r = results[(transport, step)]
    assert "protocolError" not in r, r  # a tool error, not a protocol crash
    assert r["isError"] is True, r
    return r["text"]


@pytest.mark.parametrize("t", TRANSPORTS)
def test_lists_the_tools_with_closed_schemas(sdk_run, t):
    tools = {x["name"]: x for x in sdk_run[(t, "list_tools")]["tools"]}
    assert {"create_sandbox", "list_sandboxes", "destroy_sandbox", "exec_command", "write_stdin", "kill_session",
            "apply_patch", "read_file", "write_file", "list_dir", "search", "view_image", "get_instructions",
            "list_skills", "get_skill", "snapshot_sandbox", "restore_snapshot", "fork_sandbox"} <= set(tools)
    for name, tool in tools.items():
        assert tool["inputSchema"]["type"] == "object" and tool["inputSchema"]["additionalProperties"] is False, name
        assert len(tool["description"]) > 30, name
    assert tools["create_sandbox"]["inputSchema"]["properties"] == {}  # nothing for a model to choose
    assert sdk_run[(t, "initialized")]["server"]["name"] == "airlock"


@pytest.mark.parametrize("t", TRANSPORTS)
def test_creates_a_sandbox_with_the_operators_configuration(sdk_run, t):
    created = ok(sdk_run, t, "create_sandbox")["structured"]
    assert created["state"] == "running" and created["workspace"] == "/workspace"
    listed = ok(sdk_run, t, "list_sandboxes")["structured"]["sandboxes"]
    assert [s["sandbox_id"] for s in listed] == [created["sandbox_id"]]
    # --hostname given to `airlock mcp`, seen from inside.
    assert ok(sdk_run, t, "exec_hostname")["structured"]["output"] == HOSTNAME + "\n"


@pytest.mark.parametrize("t", TRANSPORTS)
def test_exec_command(sdk_run, t):
    echo = ok(sdk_run, t, "exec_echo")["structured"]
    assert echo["exit_code"] == 3 and echo["running"] is False
    assert "hi\n" in echo["output"] and "oops\n" in echo["output"]  # stdout and stderr both
    assert ok(sdk_run, t, "exec_echo")["text"].startswith("Process exited with code 3\n")
    assert ok(sdk_run, t, "exec_pwd")["structured"]["output"] == "/workspace/sub\n"
    big = ok(sdk_run, t, "exec_big")["structured"]
    assert big["output"].startswith("1\n2\n3\n") and big["output"].endswith("99999\n100000\n")
    assert big["omitted_bytes"] > 500000 and "bytes omitted ...]" in big["output"]
    assert len(big["output"]) < 1100


@pytest.mark.parametrize("t", TRANSPORTS)
def test_a_command_that_outlives_its_yield_continues_with_write_stdin(sdk_run, t):
    slow = ok(sdk_run, t, "exec_slow")["structured"]
    assert slow["running"] is True and isinstance(slow["session_id"], int)
    assert slow["output"] == "started\n"
    done = ok(sdk_run, t, "write_stdin_wait")["structured"]
    assert done["running"] is False and done["exit_code"] == 0
    assert done["output"] == "finished\n"
    # On a tty, typed input reaches it.
    assert ok(sdk_run, t, "exec_tty")["structured"]["running"] is True
    typed = ok(sdk_run, t, "write_stdin_tty")["structured"]
    assert "got:hello" in typed["output"] and typed["exit_code"] == 0
    # Without one, stdin is closed: typing is refused, kill_session ends it.
    assert tool_error(sdk_run, t, "write_stdin_no_tty").startswith("write_stdin.chars: session ")
    assert ok(sdk_run, t, "kill_session")["structured"]["signal"] == 9
    assert tool_error(sdk_run, t, "write_stdin_gone").startswith("write_stdin.session_id: no running session")


@pytest.mark.parametrize("t", TRANSPORTS)
def test_apply_patch_then_read_and_search(sdk_run, t):
    patched = ok(sdk_run, t, "apply_patch")
    assert patched["text"].startswith("Success.")
    assert patched["structured"]["files"] == [{"path": "notes/hello.txt", "change": "added", "moved_from": ""}]
    read = ok(sdk_run, t, "read_file")
    assert read["structured"]["content"] == "hello from apply_patch\nthe needle is here\n"
    assert read["structured"]["total_lines"] == 2
    part = ok(sdk_run, t, "read_file_range")["structured"]
    assert part["content"] == "the needle is here\n" and part["first_line"] == 2
    assert ok(sdk_run, t, "cat_written")["structured"]["output"] == "written\n"
    assert {"deep/", "notes/", "sub/"} <= set(ok(sdk_run, t, "list_dir")["text"].splitlines())
    search = sdk_run[(t, "search")]
    if search.get("isError") and re.search(r"does not implement|status 12\b|unimplemented", search["text"], re.I):
        pytest.skip(f"this airlockd does not serve Search yet: {search['text']}")
    assert ok(sdk_run, t, "search")["structured"]["matches"] == [
        {"path": "notes/hello.txt", "line": 2, "text": "the needle is here"}]
    assert ok(sdk_run, t, "search_files")["structured"]["matches"] == [{"path": "notes/hello.txt"}]


@pytest.mark.parametrize("t", TRANSPORTS)
def test_instructions_and_images(sdk_run, t):
    files = ok(sdk_run, t, "get_instructions")["structured"]["files"]
    assert files == [{"path": "AGENTS.md", "content": "Be brief.\n"},
                     {"path": "sub/AGENTS.md", "content": "Tabs, not spaces.\n"}]
    image = sdk_run[(t, "view_image")]
    assert image["isError"] is False, image
    assert image["content"] == [{"type": "image", "mimeType": "image/png", "data": image["expected"]}]


@pytest.mark.parametrize("t", TRANSPORTS)
def test_bad_arguments_are_tool_errors_naming_the_argument(sdk_run, t):
    assert tool_error(sdk_run, t, "bad_type") == "exec_command.cmd: must be a string (got a number)"
    assert tool_error(sdk_run, t, "bad_unknown").startswith("read_file.host_path: unknown argument")
    assert tool_error(sdk_run, t, "bad_missing") == "read_file.sandbox_id: required"
    assert tool_error(sdk_run, t, "bad_range") == "exec_command.yield_time_ms: must be at least 0 (got -5)"
    assert tool_error(sdk_run, t, "bad_sandbox").startswith('read_file.sandbox_id: no sandbox "no-such-sandbox"')
    # A sandbox of the same owner that wasn't made through MCP is out of reach.
    assert tool_error(sdk_run, t, "foreign_sandbox").startswith("exec_command.sandbox_id: no sandbox")


HOST_PATHS = {
    "read_abs": ("read_file.path", "/etc/shadow"),
    "read_dotdot": ("read_file.path", "../../etc/passwd"),
    "read_proc_root": ("read_file.path", "/proc/1/root/etc/passwd"),
    "read_sneaky": ("read_file.path", "notes/../../../etc/passwd"),
    "write_abs": ("write_file.path", "/etc/evil"),
    "write_dotdot": ("write_file.path", "../evil"),
    "list_root": ("list_dir.path", "/"),
    "search_etc": ("search.path", "/etc"),
    "image_abs": ("view_image.path", "/usr/share/pixmaps/debian-logo.png"),
    "exec_workdir": ("exec_command.workdir", "/etc"),
    "instructions_root": ("get_instructions.workdir", "/"),
}


@pytest.mark.parametrize("t", TRANSPORTS)
def test_every_host_path_is_a_clean_tool_error(sdk_run, t):
    for step, (field, path) in HOST_PATHS.items():
        text = tool_error(sdk_run, t, f"host_{step}")
        assert text.startswith(f'{field}: "{path}" is outside the sandbox\'s workspace /workspace'), (step, text)
    # Patch paths: the daemon's own check, its message passed through.
    assert "is absolute" in tool_error(sdk_run, t, "host_patch_abs")
    assert "contains '..'" in tool_error(sdk_run, t, "host_patch_dotdot")
    assert tool_error(sdk_run, t, "host_skill_dotdot").startswith("read_skill_file.path:")
    assert tool_error(sdk_run, t, "host_skill_name").startswith("get_skill.name:")
    assert not os.path.exists("/etc/evil") and not os.path.exists("/evil")


@pytest.mark.parametrize("t", TRANSPORTS)
def test_destroy(sdk_run, client, t):
    assert ok(sdk_run, t, "destroy_sandbox")["text"].startswith("Destroyed sandbox ")
    assert tool_error(sdk_run, t, "after_destroy").startswith("exec_command.sandbox_id: no sandbox")
    assert ok(sdk_run, t, "list_after")["structured"]["sandboxes"] == []
    assert mcp_sandboxes(client) == []


def test_http_needs_the_token_and_a_loopback_origin(sdk_run):
    assert sdk_run[("http", "no_token")]["status"] == 401
    assert sdk_run[("http", "wrong_token")]["status"] == 401
    assert sdk_run[("http", "bad_origin")]["status"] == 403
    assert sdk_run[("http", "get")]["status"] == 405  # no server-initiated stream
    assert sdk_run[("http", "initialized")]["session"]
    closed = sdk_run[("http", "closed")]
    assert closed["exit"] == 0, closed["stderr"]


# --- the transports, driven directly ------------------------------------------------


def rpc(proc, message: dict) -> dict:
    proc.stdin.write(json.dumps(message) + "\n")
    proc.stdin.flush()
    return json.loads(proc.stdout.readline())


def test_stdio_framing_and_protocol_errors(daemon, client):
    proc = subprocess.Popen(airlock_mcp(daemon), stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)
    try:
        init = rpc(proc, {"jsonrpc": "2.0", "id": 1, "method": "initialize",
                          "params": {"protocolVersion": "2024-11-05", "capabilities": {},
                                     "clientInfo": {"name": "pytest", "version": "1"}}})
        assert init["result"]["protocolVersion"] == "2024-11-05"
        proc.stdin.write("this is not json\n")
        proc.stdin.flush()
        assert json.loads(proc.stdout.readline())["error"]["code"] == -32700
        assert rpc(proc, {"jsonrpc": "2.0", "id": 2, "method": "nope"})["error"]["code"] == -32601
        assert rpc(proc, {"jsonrpc": "2.0", "id": 3, "method": "tools/call",
                          "params": {"name": "no_such_tool"}})["error"]["code"] == -32602
        assert rpc(proc, {"jsonrpc": "2.0", "id": 4, "method": "ping"}) == {"jsonrpc": "2.0", "id": 4, "result": {}}
        created = rpc(proc, {"jsonrpc": "2.0", "id": 5, "method": "tools/call",
                             "params": {"name": "create_sandbox", "arguments": {}}})
        sid = created["result"]["structuredContent"]["sandbox_id"]
        assert sid in mcp_sandboxes(client)
    finally:
        proc.stdin.close()  # end of stdin: the server destroys what it created and exits
        assert proc.wait(timeout=60) == 0, proc.stderr.read()
    assert sid not in mcp_sandboxes(client)


def test_token_file_must_be_private(daemon, base_dir):
    f = base_dir / "mcp-token"
    f.write_text("0123456789abcdef0123456789abcdef\n")
    f.chmod(0o644)
    r = subprocess.run(airlock_mcp(daemon, "--http", "127.0.0.1:0", "--token-file", str(f)),
                       capture_output=True, text=True, timeout=30)
    assert r.returncode == 125
    assert str(f) in r.stderr and "chmod 600" in r.stderr, r.stderr


def test_beyond_loopback_needs_tls(daemon):
    r = subprocess.run(airlock_mcp(daemon, "--http", "0.0.0.0:0"), capture_output=True, text=True, timeout=30)
    assert r.returncode == 125
    assert "needs TLS" in r.stderr and "--tls-cert" in r.stderr, r.stderr


def start_http(daemon, *args: str):
    proc = subprocess.Popen(airlock_mcp(daemon, *args), stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                            stderr=subprocess.PIPE, text=True)
    line = proc.stderr.readline()
    deadline = time.monotonic() + 20
    while "listening on" not in line and time.monotonic() < deadline:
        assert proc.poll() is None, line + proc.stderr.read()
        line = proc.stderr.readline()
    url = re.search(r"listening on (\S+)", line).group(1)
    return proc, url


def test_tls_and_a_token_file(daemon, base_dir):
    if shutil.which("openssl") is None:
        pytest.skip("no openssl command to make a certificate")
    cert, key, token_file = base_dir / "mcp.crt", base_dir / "mcp.key", base_dir / "mcp-token-ok"
    subprocess.run(["openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes",
                    "-keyout", str(key), "-out", str(cert), "-days", "1", "-subj", "/CN=127.0.0.1",
                    "-addext", "subjectAltName=IP:127.0.0.1"], check=True, capture_output=True)
    token = "t0ken-from-a-file-0123456789"
    token_file.write_text(token + "\n")
    token_file.chmod(0o600)
    proc, url = start_http(daemon, "--http", "127.0.0.1:0", "--token-file", str(token_file),
                           "--tls-cert", str(cert), "--tls-key", str(key))
    try:
        assert url.startswith("https://127.0.0.1:")
        port = int(url.rsplit(":", 1)[1].split("/")[0])
        ctx = ssl.create_default_context(cafile=str(cert))
        body = json.dumps({"jsonrpc": "2.0", "id": 1, "method": "initialize",
                           "params": {"protocolVersion": "2025-06-18", "capabilities": {},
                                      "clientInfo": {"name": "pytest", "version": "1"}}})

        def post(headers):
            c = http.client.HTTPSConnection("127.0.0.1", port, context=ctx, timeout=30)
            c.request("POST", "/mcp", body, {"Content-Type": "application/json", **headers})
            r = c.getresponse()
            out = (r.status, r.getheader("Mcp-Session-Id"), r.read(), c.sock.version())
            c.close()
            return out

        assert post({})[0] == 401
        status, session, data, version = post({"Authorization": f"Bearer {token}"})
        assert status == 200 and session, data
        assert json.loads(data)["result"]["protocolVersion"] == "2025-06-18"
        assert version in ("TLSv1.2", "TLSv1.3")
        # No token line on stderr when the token comes from a file.
        proc.terminate()
        assert proc.wait(timeout=30) == 0
        assert token not in proc.stderr.read()
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
