"""Callers are kept apart: an unprivileged caller can't reach root's sandboxes."""

import json
import os
import subprocess
import sys
import textwrap

from conftest import CLIENT_DIR, STUBS

NOBODY = 65534

# Runs as uid 65534; prints one JSON object with what it saw.
CHILD = textwrap.dedent("""
    import json, sys
    from airlock_client import AirlockClient, AirlockError, Session
    socket, victim = sys.argv[1], sys.argv[2]
    c = AirlockClient(socket)
    seen = {}
    def attempt(name, fn):
        try:
            fn()
            seen[name] = "OK"
        except AirlockError as e:
            seen[name] = e.code + " " + e.message
    attempt("get", lambda: c.get(victim))
    attempt("resume", lambda: c.resume(victim))
    attempt("destroy", lambda: c.destroy(victim))
    ghost = Session(c, c.create(labels={"who": "nobody"}).info)
    seen["own"] = ghost.id
    seen["own_id_u"] = ghost.exec(["id", "-u"]).stdout.decode()
    seen["own_owner"] = ghost.info.owner_uid
    other = Session(c, ghost.info.__class__(**{**ghost.info.__dict__, "id": victim}))
    attempt("exec", lambda: other.exec(["id"]))
    attempt("read", lambda: other.read("/etc/hostname"))
    attempt("write", lambda: other.write("/tmp/pwned", b"x"))
    attempt("pause", lambda: other.pause())
    attempt("stats", lambda: other.stats())
    attempt("start_process", lambda: other.start_process(["sleep", "1"]))
    attempt("read_output", lambda: other.read_output("p1"))
    seen["list"] = sorted(s.id for s in c.list(include_stopped=True))
    print(json.dumps(seen))
""")


def demote():
    os.setgroups([])
    os.setgid(NOBODY)
    os.setuid(NOBODY)


def test_other_owner_sees_nothing(daemon, client, sandbox):
    # Something running as root in the victim, which must survive.
    p = sandbox.start_process(["sleep", "300"])
    env = dict(os.environ, PYTHONPATH=str(CLIENT_DIR), AIRLOCK_PYTHON_STUBS=STUBS, HOME="/")
    r = subprocess.run([sys.executable, "-c", CHILD, daemon.socket, sandbox.id], env=env, preexec_fn=demote,
                       capture_output=True, timeout=60, cwd="/")
    assert r.returncode == 0, r.stderr.decode()
    seen = json.loads(r.stdout)
    daemon.created.add(seen["own"])
    try:
        for call in ("get", "resume", "destroy", "exec", "read", "write", "pause", "stats", "start_process",
                     "read_output"):
            assert seen[call].startswith("NOT_FOUND"), (call, seen[call])
            assert sandbox.id in seen[call], (call, seen[call])
        # It may create and use its own; List shows only that one.
        assert seen["own_owner"] == NOBODY
        assert seen["own_id_u"] == "0\n"
        assert seen["list"] == [seen["own"]]
        # Root sees both; the victim is untouched.
        ids = {s.id for s in client.list()}
        assert {sandbox.id, seen["own"]} <= ids
        assert client.get(seen["own"]).owner_uid == NOBODY
        assert client.get(sandbox.id).state == "RUNNING"
        assert sandbox.process_status(p).running
        assert sandbox.exec(["test", "-e", "/tmp/pwned"]).exit_code == 1
        assert {s.id for s in client.list(labels={"who": "nobody"})} == {seen["own"]}
    finally:
        sandbox.kill(p)
        client.destroy(seen["own"])
