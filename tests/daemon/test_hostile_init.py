"""A hostile airlock-init costs its own sandbox and nothing else.

airlockd runs here with init_binary = tests/testcases/evil_init.c (built as
<build>/testcases/evil_init), which greets the daemon properly and then
misbehaves as its sandbox's hostname says (see the program's header). A
"good" sandbox, served honestly by the same program, must keep working
through every attack, and the attacked sandbox must end up STOPPED with the
reason named.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from conftest import BUILD, Daemon
from airlock_client import AirlockError


class ConfiguredDaemon(Daemon):
    """A Daemon started from a JSON config (for settings with no flag)."""

    def __init__(self, base: Path, name: str, config: dict) -> None:
        super().__init__(base, name)
        self.config_path = base / f"{name}.json"
        self.config = dict(config, socket=self.socket, socket_mode="0666", state_dir=self.state_dir)

    def argv(self) -> list[str]:
        self.config_path.write_text(json.dumps(self.config))
        return [str(self.binary), "--config", str(self.config_path)]


@pytest.fixture(scope="module")
def evil_daemon(base_dir):
    evil = BUILD / "testcases" / "evil_init"
    if not evil.exists():
        pytest.fail(f"{evil} not built (target tc_evil_init)")
    d = ConfiguredDaemon(base_dir, "evil", {"init_binary": str(evil)})
    d.start()
    yield d
    with d.client() as c:
        for s in c.list(include_stopped=True):
            try:
                c.destroy(s.id)
            except AirlockError:
                pass
    d.stop()
    assert d.leftovers() == []


@pytest.mark.parametrize("mode,reason", [
    ("evil-garbage", "broke the protocol"),
    ("evil-oversize", "message truncated"),
    ("evil-badfd", "no pty master"),
])
def test_a_protocol_breach_stops_only_that_sandbox(evil_daemon, mode, reason):
    with evil_daemon.client() as c:
        good = c.create(hostname="good")
        assert good.exec(["sh", "-c", "exit 4"]).exit_code == 4
        bad = c.create(hostname=mode)
        with pytest.raises(AirlockError) as e:
            bad.exec(["true"])
        assert e.value.code == "UNAVAILABLE"
        info = c.get(bad.id)
        assert info.state == "STOPPED"
        assert reason in info.stop_reason
        # The same daemon still serves the honest sandbox, and new ones.
        assert good.exec(["sh", "-c", "echo still; exit 5"]).stdout == b"still\n"
        assert c.create(hostname="good").exec(["true"]).exit_code == 0


def test_lies_cost_only_that_sandbox_s_results(evil_daemon):
    with evil_daemon.client() as c:
        good = c.create(hostname="good")
        liar = c.create(hostname="evil-lies")
        # It says "exit 0" without running anything: that is init's word, and
        # the result says whose word it is. Reports for ids nobody asked
        # about are dropped.
        r = liar.exec(["sh", "-c", "exit 9"])
        assert r.exit_code == 0 and r.reported_by == "init"
        assert c.get(liar.id).state == "RUNNING"
        assert good.exec(["sh", "-c", "exit 9"]).exit_code == 9


def test_a_flood_is_cut_off(evil_daemon):
    with evil_daemon.client() as c:
        good = c.create(hostname="good")
        rss_before = evil_daemon.rss_bytes()
        with pytest.raises(AirlockError):
            c.create(hostname="evil-flood").exec(["true"])
        assert good.exec(["true"]).exit_code == 0
        assert evil_daemon.rss_bytes() < rss_before + 32 * 1024 * 1024


def test_an_init_of_another_protocol_version_is_named(evil_daemon):
    with evil_daemon.client() as c:
        with pytest.raises(AirlockError) as e:
            c.create(hostname="old-init")
        assert "version 1" in e.value.message and "2" in e.value.message, e.value.message
        assert c.create(hostname="good").exec(["true"]).exit_code == 0
