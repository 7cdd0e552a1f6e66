"""Filesystem snapshots (issue 6, first part): taken of a running sandbox's
writable layer, independent of it, and the source of fresh sandboxes."""

from __future__ import annotations

import time

import pytest

from airlock_client import FailedPrecondition, InvalidArgument, NotFound


def test_snapshot_restore_fork(client):
    s = client.create(snapshots=True, manifest={"entries": [{"path": "notes.txt", "content": "from the manifest\n"}]},
                      labels={"test": "snapshots"})
    try:
        assert s.exec("echo step-1 > /workspace/state.txt && mkdir -p /root/deep && echo x > /root/deep/f").ok
        snap = s.snapshot(labels={"step": "1"})
        assert snap.sandbox_id == s.id and not snap.reused and snap.id.startswith("snap-")
        assert "output directories" in snap.contents and snap.labels == {"step": "1"}
        # Nothing changed: the same snapshot again, without freezing anything.
        again = s.snapshot()
        assert again.id == snap.id and again.reused
        # The sandbox goes on; the snapshot doesn't see what comes after.
        assert s.exec("echo step-2 > /workspace/state.txt").ok
        later = s.snapshot()
        assert later.id != snap.id and not later.reused

        r = client.restore(snap.id, labels={"test": "snapshots"})
        try:
            out = r.exec("cat /workspace/state.txt /workspace/notes.txt /root/deep/f; id -u; ls -ln /workspace/state.txt")
            text = out.stdout.decode()
            assert text.startswith("step-1\nfrom the manifest\nx\n0\n"), text
            assert " 0 0 " in text  # root's file, as root sees it in a new id range
            # Its writes are its own.
            assert r.exec("echo restored > /workspace/state.txt").ok
            assert s.exec("cat /workspace/state.txt").stdout == b"step-2\n"
        finally:
            r.delete()

        forks = client.fork(snap.id, 3, labels={"test": "snapshots"})
        try:
            ids, names = set(), set()
            for f in forks:
                res = f.exec("cat /workspace/state.txt /etc/machine-id; hostname; cat /etc/hostname")
                state, machine, uts, etc_hostname = res.stdout.decode().split("\n")[:4]
                assert state == "step-1"
                assert uts == etc_hostname == f.info.hostname
                ids.add(machine)
                names.add(uts)
            assert len(ids) == 3  # each its own machine-id
            assert names == {"sandbox-1", "sandbox-2", "sandbox-3"}  # and hostname
        finally:
            for f in forks:
                f.delete()

        # The snapshot outlives its sandbox, and deleting one breaks no other.
        s.delete()
        client.delete_snapshot(later.id)
        r2 = client.restore(snap.id)
        try:
            assert r2.exec("cat /workspace/state.txt").stdout == b"step-1\n"
        finally:
            r2.delete()
        assert [x.id for x in client.list_snapshots(s.id)] == [snap.id]
        client.delete_snapshot(snap.id)
        assert client.list_snapshots(s.id) == []
        with pytest.raises(NotFound):
            client.restore(snap.id)
    finally:
        try:
            s.delete()
        except Exception:
            pass


def test_snapshot_needs_the_pool(client):
    s = client.create(labels={"test": "snapshots"})
    try:
        with pytest.raises(FailedPrecondition, match="snapshots"):
            s.snapshot()
    finally:
        s.delete()


def test_fork_count_is_bounded(client):
    with pytest.raises(InvalidArgument, match=r"fork\.count"):
        client.fork("snap-whatever", 0)
    with pytest.raises(InvalidArgument, match=r"fork\.count"):
        client.fork("snap-whatever", 33)


def test_keep_last(client):
    s = client.create(snapshots=True, labels={"test": "snapshots"})
    try:
        taken = []
        for i in range(4):
            assert s.exec(f"echo {i} > /workspace/n").ok
            taken.append(s.snapshot(keep_last=2).id)
        assert [x.id for x in client.list_snapshots(s.id)] == taken[-2:]
        r = client.restore(taken[-2])
        try:
            assert r.exec("cat /workspace/n").stdout == b"2\n"
        finally:
            r.delete()
    finally:
        s.delete()
        for x in client.list_snapshots(s.id):
            client.delete_snapshot(x.id)


def test_export_import_and_hostile_archives(client, base_dir):
    s = client.create(snapshots=True, labels={"test": "snapshots"})
    try:
        assert s.exec("mkdir -p /workspace/d && echo carried > /workspace/d/f && chmod 4755 /workspace/d/f"
                      " && ln -s /etc/passwd /workspace/link && rm -f /etc/hostname").ok
        snap = s.snapshot()
        path = base_dir / f"{snap.id}.tar"
        size = client.export_snapshot(snap.id, str(path))
        assert size > 0
        imported = client.import_snapshot(str(path), labels={"from": "archive"})
        assert imported.id != snap.id and imported.labels == {"from": "archive"}
        assert "imported" in imported.contents
        r = client.restore(imported.id)
        try:
            out = r.exec("cat /workspace/d/f; readlink /workspace/link; ls /etc/hostname 2>&1; stat -c %a /workspace/d/f")
            text = out.stdout.decode()
            assert "carried\n/etc/passwd\n" in text, text
            assert "No such file" in text  # the whiteout travelled as one
            assert text.rstrip().endswith("755")  # setuid cleared on import
        finally:
            r.delete()

        before = {x.id for x in client.list_snapshots()}
        data = path.read_bytes()
        corrupt = bytearray(data)
        corrupt[700] ^= 0x01  # inside layer.tar's first member
        flipped = bytearray(data)
        at = data.index(b"carried")
        flipped[at] ^= 0x20  # file content: only the checksum can tell
        bad = base_dir / "corrupt.tar"
        for name, blob in (("corrupt", bytes(corrupt)), ("content flipped", bytes(flipped)), ("truncated", data[: len(data) // 2]),
                           ("padded", data + b"X" * 1024), ("empty", b""), ("not a tar", b"hello" * 200)):
            bad.write_bytes(blob)
            with pytest.raises(InvalidArgument, match="import snapshot") as refused:
                client.import_snapshot(str(bad))
            print(name, "->", refused.value)
        # Nothing left behind: no new snapshot, no staging subvolume.
        assert {x.id for x in client.list_snapshots()} == before
        import glob
        assert not [p for p in glob.glob(str(base_dir) + "/*-state/pool/sandboxes/import-*")]
        client.delete_snapshot(imported.id)
        client.delete_snapshot(snap.id)
    finally:
        s.delete()
