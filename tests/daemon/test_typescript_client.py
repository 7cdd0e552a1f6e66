"""The TypeScript client (harness/clients/typescript) against a real airlockd.

Runs the package's node:test suites — the Agents SDK's own SandboxAgent
driven by a scripted model, and every SandboxClient / SandboxSession method —
with the session daemon's socket and a directory under its allowed root
passed in the environment, and asserts they all passed (none skipped).

The network suite gets a daemon of its own with an egress config (exposed
ports on 127.0.0.1, test names resolved to 127.0.0.1) and a bare git
repository this process serves over dumb HTTP on 127.0.0.1: nothing leaves
the machine.
"""

from __future__ import annotations

import functools
import http.server
import json
import os
import re
import shutil
import subprocess
import threading
from pathlib import Path
from typing import Iterator

import pytest

from conftest import REPO, Daemon, own_daemon

PACKAGE = REPO / "harness" / "clients" / "typescript"


def _require_package() -> str:
    node = shutil.which("node")
    if not node:
        pytest.skip("no node (tools/setup.sh installs nodejs)")
    if not (PACKAGE / "node_modules" / "@openai" / "agents").is_dir():
        pytest.skip(f"{PACKAGE}/node_modules is missing: tools/setup.sh installs it (npm ci)")
    if not (PACKAGE / "dist" / "index.js").is_file():
        pytest.skip(f"{PACKAGE}/dist is missing: tools/setup.sh builds it (npm run build)")
    return node


def _run_suite(node: str, daemon: Daemon, allowed: Path | None, test_file: str, **extra_env: str) -> str:
    env = dict(os.environ)
    env.update({"AIRLOCK_SOCKET": daemon.socket, "NO_COLOR": "1", **extra_env})
    if allowed is not None:
        env["AIRLOCK_ALLOWED_DIR"] = str(allowed)
    r = subprocess.run([node, "--test", "--test-concurrency=1", "--test-reporter=tap", f"test/{test_file}"],
                       cwd=PACKAGE, env=env, capture_output=True, text=True, timeout=600)
    out = r.stdout + r.stderr
    assert r.returncode == 0, f"node --test {test_file} failed ({r.returncode}):\n{out[-12000:]}\n{daemon.log_tail()}"
    counts = {k: int(v) for k, v in re.findall(r"^# (tests|pass|fail|skipped|cancelled) (\d+)$", out, re.M)}
    assert counts.get("tests", 0) > 0 and counts.get("fail") == 0 and counts.get("cancelled") == 0, out[-4000:]
    assert counts.get("skipped") == 0, f"tests were skipped:\n{out[-4000:]}"
    return out


@pytest.fixture
def allowed_dir(base_dir: Path) -> Path:
    d = base_dir / "allowed" / "typescript"
    d.mkdir(exist_ok=True)
    return d


def test_sandbox_agent_end_to_end(daemon: Daemon, allowed_dir: Path) -> None:
    node = _require_package()
    out = _run_suite(node, daemon, allowed_dir, "agent.test.mjs")
    assert "ok 1 - SandboxAgent runs exec_command, apply_patch and write_stdin on airlock, then resumes" in out


def test_session_methods(daemon: Daemon, allowed_dir: Path) -> None:
    node = _require_package()
    out = _run_suite(node, daemon, allowed_dir, "session.test.mjs")
    assert re.search(r"^# pass ([1-9]\d*)$", out, re.M), out[-4000:]


class GitServer:
    """A bare git repository with one commit on main, served as static files
    (git's dumb HTTP transport) on 127.0.0.1; records each request's Host."""

    def __init__(self, base: Path) -> None:
        self.readme = "hello from the host's repository " + os.urandom(6).hex() + "\n"
        self.inner = "inner " + os.urandom(6).hex() + "\n"
        root = base / "git-http"
        shutil.rmtree(root, ignore_errors=True)
        work = base / "git-work"
        shutil.rmtree(work, ignore_errors=True)
        (work / "sub").mkdir(parents=True)
        (work / "README.txt").write_text(self.readme)
        (work / "sub" / "inner.txt").write_text(self.inner)
        git = ["git", "-c", "user.name=airlock", "-c", "user.email=airlock@test", "-c", "init.defaultBranch=main"]
        bare = root / "repo.git"
        run = functools.partial(subprocess.run, check=True, capture_output=True)
        run([*git, "init", "--quiet", "--bare", str(bare)])
        run([*git, "init", "--quiet", str(work)])
        run([*git, "-C", str(work), "add", "-A"])
        run([*git, "-C", str(work), "commit", "--quiet", "-m", "airlock test commit"])
        run([*git, "-C", str(work), "push", "--quiet", str(bare), "HEAD:refs/heads/main"])
        run(["git", "-C", str(bare), "symbolic-ref", "HEAD", "refs/heads/main"])
        run(["git", "-C", str(bare), "update-server-info"])  # info/refs for the dumb transport
        self.hosts: list[str] = []
        outer = self

        class Handler(http.server.SimpleHTTPRequestHandler):
            def log_message(self, *args) -> None:  # quiet
                pass

            def do_GET(self) -> None:
                outer.hosts.append(self.headers.get("Host", ""))
                super().do_GET()

        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), functools.partial(Handler, directory=str(root)))
        self.port = self.server.server_address[1]
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def git_server(base_dir: Path) -> Iterator[GitServer]:
    if not shutil.which("git"):
        pytest.skip("no git")
    g = GitServer(base_dir)
    yield g
    g.close()


def test_network_features(base_dir: Path, git_server: GitServer) -> None:
    """resolveExposedPort reaches a server inside the sandbox; git_repo entries
    clone through the egress policy, and a host it doesn't allow is refused."""
    node = _require_package()
    cfg = base_dir / "ts-network.json"
    # git.test and denied.test both resolve to the loopback server; only
    # git.test is allowed, so the refusal is the policy's, not the network's.
    cfg.write_text(json.dumps({"egress": {"resolve": {"git.test": ["127.0.0.1"], "denied.test": ["127.0.0.1"]},
                                          "expose_address": "127.0.0.1"}}))
    os.chmod(cfg, 0o600)
    port = git_server.port
    with own_daemon(base_dir, "ts-network", extra=("--config", str(cfg))) as daemon:
        out = _run_suite(node, daemon, None, "network.test.mjs",
                         AIRLOCK_EXPOSE_ADDRESS="127.0.0.1",
                         AIRLOCK_GIT_URL=f"http://git.test:{port}/repo.git",
                         AIRLOCK_GIT_DENIED_URL=f"http://denied.test:{port}/repo.git",
                         # The name with its port, and the loopback address it resolves to (refused otherwise).
                         AIRLOCK_GIT_ALLOW=f"git.test:{port},127.0.0.1:{port}",
                         AIRLOCK_GIT_README=git_server.readme, AIRLOCK_GIT_INNER=git_server.inner)
    assert re.search(r"^# pass 3$", out, re.M), out[-4000:]
    # The clones came through the proxy under the allowed name; the refused one never arrived.
    assert git_server.hosts and set(git_server.hosts) == {f"git.test:{port}"}, git_server.hosts
