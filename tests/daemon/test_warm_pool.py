"""The warm pool: a Create of the common shape takes an already started
sandbox, which then belongs to its caller and gets its manifest applied."""

from __future__ import annotations

import os
import subprocess
import sys
import time

import pytest

from test_hostile_init import ConfiguredDaemon

NOBODY = 65534


@pytest.fixture(scope="module")
def warm(base_dir):
    d = ConfiguredDaemon(base_dir, "warm", {"warm_pool": 2})
    d.start()
    yield d
    d.destroy_all()
    d.stop()
    assert d.leftovers() == []


def pooled_ids(d):
    """Sandbox records the daemon holds that nobody created yet (the pool)."""
    with d.client() as c:
        listed = {s.id for s in c.list(include_stopped=True)}
    records = set(os.listdir(os.path.join(d.state_dir, "sandboxes")))
    return {r for r in records if not r.startswith(".")} - listed


def wait_for_pool(d, n, timeout=30):
    deadline = time.monotonic() + timeout
    while len(pooled_ids(d)) < n:
        assert time.monotonic() < deadline, f"the pool never reached {n}"
        time.sleep(0.05)


def test_a_common_create_takes_a_pooled_sandbox(warm):
    wait_for_pool(warm, 2)
    pooled = pooled_ids(warm)
    with warm.client() as c:
        s = c.create(labels={"k": "v"}, manifest={"entries": [{"path": "hi.txt", "content": "hello\n"}],
                                                  "environment": {"X": "1"}})
        assert s.id in pooled
        assert s.info.labels == {"k": "v"} and s.info.owner_uid == 0
        assert s.exec(["sh", "-c", "cat hi.txt; echo $X; pwd"]).stdout == b"hello\n1\n/workspace\n"
        s.delete()
    wait_for_pool(warm, 2)  # refilled


def test_another_caller_gets_its_own(warm):
    wait_for_pool(warm, 1)
    child = r"""
import sys
from airlock_client import AirlockClient
with AirlockClient(sys.argv[1]) as c:
    s = c.create()
    print(s.info.owner_uid, s.exec(["id", "-u"]).stdout.decode().strip(), len(c.list()))
    s.delete()
"""
    env = dict(os.environ, PYTHONPATH=os.pathsep.join(sys.path))
    r = subprocess.run([sys.executable, "-c", child, warm.socket], env=env, capture_output=True, text=True,
                       preexec_fn=lambda: (os.setgroups([]), os.setgid(NOBODY), os.setuid(NOBODY)), timeout=60)
    assert r.returncode == 0, r.stderr
    assert r.stdout.split() == [str(NOBODY), "0", "1"]


def test_another_shape_is_built_fresh(warm):
    wait_for_pool(warm, 2)
    pooled = pooled_ids(warm)
    with warm.client() as c:
        s = c.create(limits={"pids": 64}, hostname="other")
        assert s.id not in pooled
        assert s.exec(["hostname"]).stdout == b"other\n"
        s.delete()
