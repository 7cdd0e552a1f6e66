"""Sandboxes' lifecycle: list, pause/resume, stats, events, lifetimes, reattach."""

import queue
import threading
import time

import pytest

from airlock_client import AirlockClient, FailedPrecondition, Limits, NotFound, Session


def test_list_get_labels_and_delete(client):
    tag = f"run-{time.monotonic_ns()}"
    a = client.create(labels={"suite": tag, "role": "a"})
    b = client.create(labels={"suite": tag, "role": "b"})
    try:
        assert {s.id for s in client.list(labels={"suite": tag})} == {a.id, b.id}
        assert [s.id for s in client.list(labels={"suite": tag, "role": "b"})] == [b.id]
        info = client.get(a.id)
        assert info.state == "RUNNING" and info.labels == {"suite": tag, "role": "a"}
        assert info.owner_uid == 0 and info.image == "host" and info.created_unix_ms > 0
    finally:
        gone = a.delete()
        assert gone.state == "DESTROYED"
        b.delete()
    assert client.list(labels={"suite": tag}, include_stopped=True) == []
    with pytest.raises(NotFound):
        client.get(a.id)
    with pytest.raises(NotFound):
        a.exec(["true"])
    with pytest.raises(NotFound):
        a.delete()


def test_pause_resume(fresh):
    p = fresh.start_process(["/bin/sh", "-c", "i=0; while :; do i=$((i+1)); echo $i > /tmp/count; sleep 0.05; done"])
    time.sleep(0.3)
    assert fresh.pause().state == "PAUSED"
    assert fresh.refresh().state == "PAUSED"
    with pytest.raises(FailedPrecondition) as e:
        fresh.exec(["true"])
    assert "paused" in e.value.message
    with pytest.raises(FailedPrecondition):
        fresh.read("/tmp/count")
    with pytest.raises(FailedPrecondition):
        fresh.exec_stream(["true"])
    assert fresh.pause().state == "PAUSED"  # idempotent
    assert fresh.resume().state == "RUNNING"
    before = int(fresh.read("/tmp/count"))
    time.sleep(0.5)
    assert int(fresh.read("/tmp/count")) > before  # the loop runs again
    assert fresh.exec(["echo", "ok"]).stdout == b"ok\n"
    fresh.kill(p)


def test_paused_processes_do_not_run(fresh):
    p = fresh.start_process(["/bin/sh", "-c", "while :; do date +%s%N > /tmp/t; sleep 0.02; done"])
    time.sleep(0.2)
    fresh.pause()
    stats_paused_1 = fresh.stats().cpu_usage_ns
    time.sleep(0.5)
    stats_paused_2 = fresh.stats().cpu_usage_ns
    fresh.resume()
    assert stats_paused_2 - stats_paused_1 < 20_000_000, (stats_paused_1, stats_paused_2)
    fresh.kill(p)


def test_stats(client):
    s = client.create(limits=Limits(memory_bytes=256 << 20, pids=128))
    try:
        p = s.start_process(["sleep", "60"])
        st = s.stats()
        assert st.id == s.id
        assert st.pids >= 1 and st.memory_bytes > 0, st
        assert st.memory_limit_bytes == 256 << 20 and st.pids_limit == 128
        before = st.pids
        more = [s.start_process(["sleep", "60"]) for _ in range(3)]
        assert s.stats().pids >= before + 3
        for q in more + [p]:
            s.kill(q)
        # Burn CPU inside (a fixed amount of work, ~0.2 s): the sandbox's usage
        # counter must grow by at least what the shell says it used (clock
        # ticks, from its own /proc/<pid>/stat).
        before = s.stats().cpu_usage_ns
        r = s.exec(["/bin/sh", "-c", "i=0; while [ $i -lt 300000 ]; do i=$((i+1)); done; cat /proc/$$/stat"])
        fields = r.stdout.decode().rsplit(")", 1)[1].split()
        ticks = int(fields[11]) + int(fields[12])  # utime + stime
        assert ticks >= 5, r.stdout
        grown = s.stats().cpu_usage_ns - before
        assert grown >= (ticks - 2) * 10_000_000, (before, grown, ticks)
    finally:
        s.delete()


def collect_events(stream, until, timeout=10.0):
    """Events from `stream` until until(events) is true; cancels the stream."""
    got: "queue.Queue" = queue.Queue()

    def pump():
        try:
            for e in stream:
                got.put(e)
        except Exception as exc:  # noqa: BLE001
            got.put(exc)

    t = threading.Thread(target=pump, daemon=True)
    t.start()
    events = []
    deadline = time.monotonic() + timeout
    try:
        while not until(events):
            left = deadline - time.monotonic()
            assert left > 0, f"events so far: {events}"
            try:
                e = got.get(timeout=left)
            except queue.Empty:
                continue
            if isinstance(e, Exception):
                raise e
            events.append(e)
    finally:
        stream.cancel()
        t.join(5)
    return events


def test_events_created_and_destroyed(client, sandbox):
    # `sandbox` (created first in this session) holds event seq 1, so
    # since_seq=1 misses nothing of the sandbox made here.
    s = client.create(labels={"test": "events"})
    s.pause()
    s.resume()
    s.delete()
    events = collect_events(client.events(sandbox_id=s.id, since_seq=1),
                            lambda ev: any(e.type == "DESTROYED" for e in ev))
    assert [e.type for e in events] == ["CREATED", "PAUSED", "RESUMED", "DESTROYED"]
    assert all(e.sandbox_id == s.id for e in events)
    seqs = [e.seq for e in events]
    assert seqs == sorted(seqs) and len(set(seqs)) == 4
    assert all(e.unix_ms > 0 for e in events)


def test_events_live(client):
    stream = client.events(since_seq=0)
    time.sleep(0.5)  # let the daemon take the subscription before the events happen
    s = client.create(labels={"test": "events-live"})
    s.delete()
    events = collect_events(stream, lambda ev: any(e.type == "DESTROYED" and e.sandbox_id == s.id for e in ev))
    mine = [e.type for e in events if e.sandbox_id == s.id]
    assert mine == ["CREATED", "DESTROYED"]


def test_lifetime_and_idle_timeout(client):
    short = client.create(lifetime_ms=1000)
    idle = client.create(idle_timeout_ms=1000)
    busy = client.create(idle_timeout_ms=1500)
    try:
        assert short.info.expires_unix_ms >= short.info.created_unix_ms + 1000
        deadline = time.monotonic() + 8
        while time.monotonic() < deadline:
            busy.exec(["true"])  # calls keep it alive
            if client.get(short.id).state == "STOPPED" and client.get(idle.id).state == "STOPPED":
                break
            time.sleep(0.25)
        info = client.get(short.id)
        assert info.state == "STOPPED" and "lifetime" in info.stop_reason, info
        info = client.get(idle.id)
        assert info.state == "STOPPED" and "idle" in info.stop_reason, info
        assert client.get(busy.id).state == "RUNNING"
        with pytest.raises(FailedPrecondition) as e:
            short.exec(["true"])
        assert "stopped" in e.value.message
        with pytest.raises(FailedPrecondition):
            client.resume(short.id)
        assert short.id in {s.id for s in client.list(include_stopped=True)}
        assert short.id not in {s.id for s in client.list()}
    finally:
        for s in (short, idle, busy):
            s.delete()
    with pytest.raises(NotFound):
        client.get(short.id)


def test_serialize_and_reattach(daemon, client, fresh):
    fresh.write("state.txt", b"kept")
    data = fresh.serialize()
    assert data["sandbox_id"] == fresh.id and data["socket"] == daemon.socket
    assert data["workspace"] == fresh.workspace
    with AirlockClient(daemon.socket) as other:
        again = Session.deserialize(other, data)
        assert again.id == fresh.id and again.workspace == fresh.workspace
        assert again.read("state.txt") == b"kept"
        assert again.exec(["cat", "state.txt"]).stdout == b"kept"
    again = Session.deserialize(None, data)
    assert again.exec(["true"]).exit_code == 0
    again.client.close()
    with pytest.raises(NotFound):
        Session.deserialize(client, dict(data, sandbox_id="sb-000000000000"))


def test_version(client):
    v = client.version()
    assert v.version and v.init_protocol >= 1


@pytest.mark.parametrize("limits", [None, {"disk_bytes": 256 << 20}], ids=["tmpfs upper", "pool subvolume"])
def test_stats_count_what_the_writable_layer_holds(client, limits):
    s = client.create(limits=limits)
    try:
        before = s.stats().disk_bytes
        s.exec(["sh", "-c", "head -c 20000000 /dev/urandom > /workspace/blob; sync"])
        deadline = time.monotonic() + 10
        while s.stats().disk_bytes < before + 19_000_000:  # btrfs accounts at commit
            assert time.monotonic() < deadline, (before, s.stats())
            time.sleep(0.2)
        if limits:
            assert s.stats().disk_limit_bytes == 256 << 20
    finally:
        s.delete()
