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
            ids = set()
            for f in forks:
                res = f.exec("cat /workspace/state.txt /etc/machine-id")
                state, machine = res.stdout.decode().split("\n")[:2]
                assert state == "step-1"
                ids.add(machine)
            assert len(ids) == 3  # each its own machine-id
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
