"""The TypeScript client (harness/clients/typescript) against a real airlockd.

Runs the package's node:test suites — the Agents SDK's own SandboxAgent
driven by a scripted model, and every SandboxClient / SandboxSession method —
with the session daemon's socket and a directory under its allowed root
passed in the environment, and asserts they all passed (none skipped).
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
from pathlib import Path

import pytest

from conftest import REPO, Daemon

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


def _run_suite(node: str, daemon: Daemon, allowed: Path, test_file: str) -> str:
    env = dict(os.environ)
    env.update({"AIRLOCK_SOCKET": daemon.socket, "AIRLOCK_ALLOWED_DIR": str(allowed), "NO_COLOR": "1"})
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
