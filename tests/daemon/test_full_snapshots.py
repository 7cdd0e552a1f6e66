"""Full snapshots (issue 6): a checkpointable sandbox's processes are
checkpointed with CRIU together with its writable layer; a restore continues
them. CRIU images are trusted input to a root process, so only image sets
this daemon sealed are restored.

Where CRIU can't run (the build host: Debian's CRIU 3.17 fails `criu check`
on its 6.18 kernel) only the refusals are tested here; the rest runs in the
guest lane (ctest vm-daemon: tests/vm/guest-daemon.sh runs this file in a
QEMU guest with Debian's 6.1 kernel).
"""

from __future__ import annotations

import io
import json
import os
import shutil
import signal
import subprocess
import sys
import tarfile
import time
from pathlib import Path

import pytest

from airlock_client import FailedPrecondition, InvalidArgument
from test_lifecycle import collect_events
from test_recovery import init_pid, wait_for


def _criu_check() -> str:
    """'' if CRIU can checkpoint here, else why not."""
    if shutil.which("criu") is None:
        return "criu is not installed"
    r = subprocess.run(["criu", "check"], capture_output=True, text=True)
    if r.returncode != 0:
        tail = (r.stderr or r.stdout).strip().splitlines()[-1:] or ["?"]
        return f"`criu check` fails here ({tail[0]})"
    return ""


CRIU_PROBLEM = _criu_check()
needs_criu = pytest.mark.skipif(bool(CRIU_PROBLEM), reason=f"{CRIU_PROBLEM}; runs in the guest lane (vm-daemon)")

# A long-running Python process that keeps state only in memory: it answers
# commands dropped in /tmp/cmd (a Python expression) in /tmp/out, and counts
# its loop in /tmp/ticks. Started detached, its stdio inside the sandbox.
REPL = r'''
import os, time
token = os.urandom(8).hex()
big = bytearray(os.urandom(1 << 20)) * 8
state = {"token": token, "n": 0}
ticks = 0
while True:
    ticks += 1
    if os.path.exists("/tmp/cmd"):
        src = open("/tmp/cmd").read()
        os.unlink("/tmp/cmd")
        try:
            out = repr(eval(src, {"state": state, "big": big, "ticks": ticks}))
        except Exception as e:
            out = "error: %r" % e
        with open("/tmp/out.new", "w") as f:
            f.write(out)
        os.rename("/tmp/out.new", "/tmp/out")
    time.sleep(0.05)
'''


def start_repl(s) -> None:
    assert s.exec("cat > /tmp/repl.py", stdin=REPL.encode()).ok
    r = s.exec("setsid python3 /tmp/repl.py </dev/null >/tmp/repl.log 2>&1 & echo started")
    assert r.ok, r


def ask(s, expr: str, seconds: float = 60.0) -> str:
    """Evaluates `expr` in the sandbox's REPL process; its repr."""
    # Written whole, then renamed: the REPL never reads half a command.
    assert s.exec("rm -f /tmp/out; cat > /tmp/cmd.new && mv /tmp/cmd.new /tmp/cmd", stdin=expr.encode()).ok
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        r = s.exec("cat /tmp/out 2>/dev/null")
        if r.ok and r.stdout:
            return r.stdout.decode()
        time.sleep(0.2)
    log = s.exec("cat /tmp/repl.log; ps -ef").stdout.decode()
    raise AssertionError(f"the REPL didn't answer {expr!r}: {log}")


def repl_sandbox(client, **create):
    """A checkpointable sandbox running the REPL; (session, the REPL's token)."""
    s = client.create(checkpointable=True, labels={"test": "full"}, **create)
    try:
        start_repl(s)
        return s, ask(s, "state['token']")
    except BaseException:
        s.delete()
        raise


def checkpoint_dir(daemon, snap_id: str) -> Path:
    return Path(daemon.state_dir) / "checkpoints" / snap_id


def cleanup(client, *sessions, sandbox_ids=()):
    for s in sessions:
        try:
            s.delete()
        except Exception:
            pass
    if os.environ.get("AIRLOCK_TEST_KEEP"):
        return  # their CRIU logs are worth a look
    for sid in sandbox_ids:
        for x in client.list_snapshots(sid):
            client.delete_snapshot(x.id)


# --- what works everywhere: the refusals --------------------------------------------------------

def test_full_snapshot_needs_a_checkpointable_sandbox(client):
    s = client.create(snapshots=True, labels={"test": "full"})
    try:
        assert not s.info.checkpointable
        with pytest.raises(FailedPrecondition, match="wasn't created checkpointable"):
            s.snapshot(full=True)
        snap = s.snapshot()  # the filesystem still can be
        assert not snap.full
    finally:
        cleanup(client, s, sandbox_ids=[s.id])


def test_checkpointable_is_refused_where_it_cannot_work(client):
    with pytest.raises(InvalidArgument, match="create.checkpointable: not with network mode proxy"):
        client.create(checkpointable=True, network="proxy", egress={"allow": ["example.com"]})
    with pytest.raises(InvalidArgument, match="create.recovery.full"):
        client.create(recovery={"rebuild": True, "full": True})


@needs_criu
def test_what_criu_cannot_dump_is_refused_by_name(client):
    # An inotify watch (CRIU 3.17 can't dump one on overlayfs): the preflight
    # names the process and descriptor before CRIU is asked; nothing is left,
    # and the filesystem still snapshots.
    s = client.create(checkpointable=True, labels={"test": "full"})
    try:
        watcher = ("import ctypes, time; libc = ctypes.CDLL(None); fd = libc.inotify_init(); "
                   "assert libc.inotify_add_watch(fd, b'/workspace', 2) >= 0; open('/tmp/watching', 'w'); "
                   "time.sleep(1e6)")
        assert s.exec(f'setsid python3 -c "{watcher}" </dev/null >/dev/null 2>&1 &').ok
        wait_for(lambda: s.exec("test -e /tmp/watching").ok)
        with pytest.raises(FailedPrecondition, match=r"snapshot.full: .*\(python3\).*inotify"):
            s.snapshot(full=True)
        assert client.list_snapshots(s.id) == []
        assert not s.snapshot().full
    finally:
        cleanup(client, s, sandbox_ids=[s.id])


@pytest.mark.skipif(not CRIU_PROBLEM, reason="CRIU works here: the refusal can't be seen")
def test_without_criu_a_full_snapshot_says_why_and_files_still_snapshot(client):
    s = client.create(checkpointable=True, labels={"test": "full"})
    try:
        assert s.info.checkpointable and s.exec("echo hi > /workspace/f").ok
        with pytest.raises(FailedPrecondition, match="CRIU can't checkpoint on this host") as e:
            s.snapshot(full=True)
        assert "filesystem snapshots still work" in str(e.value)
        snap = s.snapshot()
        assert not snap.full and snap.id.startswith("snap-")
        assert client.list_snapshots(s.id)[0].id == snap.id  # nothing half-made was kept
    finally:
        cleanup(client, s, sandbox_ids=[s.id])


# --- with CRIU (the guest lane) ------------------------------------------------------------------

@needs_criu
def test_a_restored_sandbox_continues_its_processes(client, daemon):
    s, token = repl_sandbox(client)
    sid = s.id
    try:
        assert s.exec("echo layer-before > /workspace/state").ok
        assert ask(s, "state.__setitem__('n', 41) or state['n']") == "41"
        ticks = int(ask(s, "ticks"))

        snap = s.snapshot(full=True, labels={"step": "1"})
        assert snap.full and snap.process_images_bytes > 8 << 20  # the REPL's 8 MiB came along
        assert "processes" in snap.contents and snap.frozen_us > 0
        listed = {x.id: x for x in client.list_snapshots(sid)}
        assert listed[snap.id].full
        seal = json.loads((checkpoint_dir(daemon, snap.id) / "airlock-checkpoint.json").read_text())
        assert seal["sandbox_id"] == sid and len(seal["hmac_sha256"]) == 64
        assert any(n.startswith("pages-") for n in seal["files"]) and "dump.log" not in seal["files"]

        # The sandbox goes on after the snapshot; the restore goes back to it.
        assert ask(s, "state.__setitem__('n', 99) or state['n']") == "99"
        assert s.exec("echo layer-after > /workspace/state").ok

        # Its processes come back only in the source's id range.
        with pytest.raises(FailedPrecondition, match="id range"):
            client.restore(snap.id)
        with pytest.raises(FailedPrecondition, match="is full"):
            client.fork(snap.id, 2)
        s.delete()

        r = client.restore(snap.id, labels={"test": "full"})
        try:
            assert r.info.processes_restored and r.id == sid  # the source, continued
            assert ask(r, "state['token']") == token  # the same process, its memory intact
            assert ask(r, "state['n']") == "41"
            assert int(ask(r, "ticks")) > ticks  # and it runs on
            assert ask(r, "len(big)") == str(8 << 20)
            assert r.exec("cat /workspace/state").stdout == b"layer-before\n"
            # What runs inside still sees itself sandboxed: pid 1 is init.
            out = r.exec("cat /proc/1/comm; grep Seccomp: /proc/self/status").stdout.decode()
            assert out.startswith("airlock-init\n") and "Seccomp:\t2" in out, out
            # CRIU 3.17 can't checkpoint a tree it restored: refused, named.
            with pytest.raises(FailedPrecondition, match="was restored from a full snapshot"):
                r.snapshot(full=True)
            assert not r.snapshot().full
        finally:
            r.delete()
        # The same snapshot again (a restore leaves CRIU's statistics beside
        # the images; the seal still holds).
        again = client.restore(snap.id, labels={"test": "full"})
        try:
            assert ask(again, "state['token']") == token
        finally:
            again.delete()

        # The filesystem alone, in a range of its own, with a fresh init.
        f = client.restore(snap.id, filesystem_only=True, labels={"test": "full"})
        try:
            assert not f.info.processes_restored
            assert f.exec("cat /workspace/state").stdout == b"layer-before\n"
            assert f.exec("pgrep -f '^python3 /tmp/repl' || echo none").stdout == b"none\n"
        finally:
            f.delete()
    finally:
        cleanup(client, s, sandbox_ids=[sid])


@needs_criu
def test_altered_process_images_are_refused(client, daemon):
    s, _ = repl_sandbox(client)
    sid = s.id
    try:
        snap = s.snapshot(full=True)
        s.delete()
        d = checkpoint_dir(daemon, snap.id)
        pages = sorted(d.glob("pages-*.img"))[0]
        original = pages.read_bytes()
        with open(pages, "r+b") as f:
            f.seek(100)
            f.write(b"\xcc" * 16)
        with pytest.raises(FailedPrecondition, match="was altered"):
            client.restore(snap.id)
        pages.write_bytes(original)
        extra = d / "extra.img"
        extra.write_bytes(b"x")
        with pytest.raises(FailedPrecondition, match="not in the seal"):
            client.restore(snap.id)
        extra.unlink()
        seal_path = d / "airlock-checkpoint.json"
        seal = json.loads(seal_path.read_text())
        seal["id_base"] += 65536  # another sandbox's range
        seal_path.write_text(json.dumps(seal))
        with pytest.raises(FailedPrecondition, match="HMAC does not verify"):
            client.restore(snap.id)
        # Its files still restore.
        f = client.restore(snap.id, filesystem_only=True)
        f.delete()
    finally:
        cleanup(client, s, sandbox_ids=[sid])


def _rewrite_seal(archive: bytes, change) -> bytes:
    """The archive with its seal changed by `change`, the manifest's checksums made to match (what an
    attacker who can write archives, but doesn't hold the daemon's key, can do)."""
    import hashlib
    src = tarfile.open(fileobj=io.BytesIO(archive))
    members = [(m, src.extractfile(m).read()) for m in src.getmembers()]
    out = io.BytesIO()
    with tarfile.open(fileobj=out, mode="w", format=tarfile.USTAR_FORMAT) as dst:
        manifest = json.loads(members[-1][1])
        for m, data in members[:-1]:
            if m.name == "criu/airlock-checkpoint.json":
                seal = json.loads(data)
                change(seal)
                data = json.dumps(seal).encode()
                manifest["process_images"]["airlock-checkpoint.json"] = {
                    "digest": "sha256:" + hashlib.sha256(data).hexdigest(), "size": len(data)}
            m.size = len(data)
            dst.addfile(m, io.BytesIO(data))
        text = json.dumps(manifest).encode()
        m = members[-1][0]
        m.size = len(text)
        dst.addfile(m, io.BytesIO(text))
    return out.getvalue()


@needs_criu
def test_export_import_keeps_processes_only_with_this_daemons_seal(client, tmp_path):
    s, token = repl_sandbox(client)
    sid = s.id
    made = []
    try:
        assert s.exec("echo kept > /workspace/mark").ok
        snap = s.snapshot(full=True)
        path = tmp_path / "full.tar"
        client.export_snapshot(snap.id, str(path))
        names = tarfile.open(path).getnames()
        assert names[0] == "layer.tar" and names[-1] == "airlock-snapshot.json"
        assert "criu/airlock-checkpoint.json" in names and any(n.startswith("criu/pages-") for n in names)

        # Sealed here: imported whole.
        imported = client.import_snapshot(str(path))
        assert imported.full and "with its processes" in imported.contents
        # A seal this daemon's key didn't make: the files only.
        forged = tmp_path / "forged.tar"
        forged.write_bytes(_rewrite_seal(path.read_bytes(), lambda seal: seal.update(hmac_sha256="00" * 32)))
        fs_only = client.import_snapshot(str(forged))
        assert not fs_only.full and "process images were dropped" in fs_only.contents
        assert "HMAC" in fs_only.contents

        s.delete()
        made.append(client.restore(imported.id))
        assert ask(made[-1], "state['token']") == token
        made[-1].delete()
        made.append(client.restore(fs_only.id))
        assert not made[-1].info.processes_restored
        assert made[-1].exec("cat /workspace/mark").stdout == b"kept\n"
    finally:
        cleanup(client, s, *made, sandbox_ids=[sid])
        for x in client.list_snapshots():
            if x.labels.get("test") == "full" or x.sandbox_id == sid:
                client.delete_snapshot(x.id)


@needs_criu
def test_recovery_brings_processes_back(client):
    s, token = repl_sandbox(client, recovery={"rebuild": True, "full": True})
    sid = s.id
    try:
        snap = s.snapshot(full=True)
        stream = client.events(sandbox_id=sid)
        time.sleep(0.3)
        os.kill(init_pid(sid), signal.SIGKILL)
        info = wait_for(lambda: (lambda i: i if i.state == "RUNNING" and i.generation == 2 else None)(client.get(sid)),
                        seconds=120)
        assert info.rebuilt_from == snap.id and info.processes_restored
        evs = collect_events(stream, lambda ev: any(e.type == "REHYDRATED" for e in ev))
        rehydrated = [e for e in evs if e.type == "REHYDRATED"][0]
        assert "processes came back" in rehydrated.message, rehydrated.message
        r = client.resume(sid)
        assert ask(r, "state['token']") == token
    finally:
        cleanup(client, s, sandbox_ids=[sid])


@needs_criu
def test_after_an_airlockd_restart_with_an_output_dir(base_dir):
    # The keeper holds the sandbox across the restart; the next airlockd
    # takes it back and can still checkpoint it, its writable host mount
    # (an output dir, idmapped) named as the launch made it.
    from airlock_client import Manifest, ManifestEntry
    from conftest import own_daemon

    allowed = base_dir / "full-allowed"
    out = allowed / "out"
    out.mkdir(parents=True)
    os.chmod(allowed, 0o755)
    os.chown(out, 4242, 4242)
    with own_daemon(base_dir, "full-restart", allow_roots=(str(allowed),)) as d:
        c = d.client()
        s = c.create(checkpointable=True, manifest=Manifest(entries=[ManifestEntry("out", output_dir=str(out))]))
        sid = s.id
        start_repl(s)
        token = ask(s, "state['token']")
        c.close()
        d.kill9()
        d.start()
        c = d.client()
        s = c.resume(sid)
        assert s.info.checkpointable
        assert ask(s, "open('/workspace/out/log', 'a').write('before\\n')") == "7"
        snap = s.snapshot(full=True)
        assert snap.full
        s.delete()
        r = c.restore(snap.id)
        assert ask(r, "state['token']") == token
        assert ask(r, "open('/workspace/out/log', 'a').write('after\\n')") == "6"
        assert (out / "log").read_text() == "before\nafter\n"
        assert (out / "log").stat().st_uid == 4242  # still the directory's owner's
        r.delete()
        for x in c.list_snapshots():
            c.delete_snapshot(x.id)
        c.close()


@needs_criu
def test_an_imported_full_snapshot_cannot_continue_someone_elses_sandbox(client, daemon, tmp_path):
    # root's sandbox, checkpointed and exported, then stopped (its init
    # killed: its record stays, root's); nobody imports the archive (the
    # seal is this daemon's, so it is full) and tries to restore its
    # processes: they would continue root's sandbox under its id.
    import textwrap
    from conftest import CLIENT_DIR, STUBS

    s, _ = repl_sandbox(client)
    sid = s.id
    try:
        snap = s.snapshot(full=True)
        archive = tmp_path / "root.tar"
        client.export_snapshot(snap.id, str(archive))
        os.kill(init_pid(sid), signal.SIGKILL)
        wait_for(lambda: client.get(sid).state == "STOPPED")
        child = textwrap.dedent("""
            import sys
            from airlock_client import AirlockClient, AirlockError
            c = AirlockClient(sys.argv[1])
            imported = c.import_snapshot("/dev/stdin")  # the archive: root's file, handed over
            print("full" if imported.full else "files")
            try:
                c.restore(imported.id)
                print("restored")
            except AirlockError as e:
                print(e.code, e.message)
            print("files-only", c.restore(imported.id, filesystem_only=True).info.owner_uid)
        """)
        env = dict(os.environ, PYTHONPATH=str(CLIENT_DIR), AIRLOCK_PYTHON_STUBS=STUBS)
        with open(archive, "rb") as stdin:
            r = subprocess.run([sys.executable, "-c", child, daemon.socket], env=env, stdin=stdin,
                               capture_output=True, text=True, user=65534, group=65534, timeout=300)
        out = r.stdout.splitlines()
        assert out and out[0] == "full", r.stderr
        assert out[1].startswith("FAILED_PRECONDITION") and "not the caller's" in out[1], out
        assert out[2] == "files-only 65534", out
    finally:
        cleanup(client, s, sandbox_ids=[sid])
        for x in client.list_snapshots():
            if x.owner_uid == 65534:
                client.delete_snapshot(x.id)
        for x in client.list():
            if x.owner_uid == 65534:
                client.destroy(x.id)
