"""pytest fixtures that run a real airlockd.

The daemon comes from $AIRLOCK_BUILD (default <repo>/build): <build>/airlockd,
with the Python stubs in <build>/python (or $AIRLOCK_PYTHON_STUBS). Each test
session gets a private socket and state dir under a fresh directory in /tmp;
at the end the daemon is stopped (SIGTERM) and nothing it made may be left:
no cgroup of any of its sandboxes, no sandbox record in its state dir, no
mount under the test directory.

Needs root (airlockd does); without it every test here is skipped.
AIRLOCK_TEST_KEEP=1 keeps the test directory (daemon logs, state) for a look.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Iterator, Optional

import pytest

sys.dont_write_bytecode = True  # no __pycache__ in the source tree for the client package

REPO = Path(__file__).resolve().parents[2]
CLIENT_DIR = REPO / "harness" / "clients" / "python"
BUILD = Path(os.environ.get("AIRLOCK_BUILD", str(REPO / "build")))
STUBS = os.environ.get("AIRLOCK_PYTHON_STUBS") or str(BUILD / "python")

sys.path.insert(0, str(CLIENT_DIR))
os.environ["AIRLOCK_PYTHON_STUBS"] = STUBS  # for this process and the subprocesses the tests start

from airlock_client import AirlockClient, Session  # noqa: E402

IS_ROOT = os.geteuid() == 0


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    if IS_ROOT:
        return
    skip = pytest.mark.skip(reason="tests/daemon runs a real airlockd, which needs root (euid is %d)" % os.geteuid())
    for item in items:
        if str(Path(str(item.fspath)).resolve()).startswith(str(Path(__file__).parent.resolve())):
            item.add_marker(skip)


def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:
    # Without root nothing here ran: ctest counts exit 77 as skipped, not passed.
    if not IS_ROOT and exitstatus == 0:
        session.exitstatus = 77


def find_cgroups(names: set[str]) -> list[str]:
    """Cgroup directories anywhere under /sys/fs/cgroup whose name is in `names`."""
    found = []
    if not names:
        return found
    for top, dirs, _ in os.walk("/sys/fs/cgroup"):
        for d in dirs:
            if d in names:
                found.append(os.path.join(top, d))
    return found


def mounts_under(prefix: str) -> list[str]:
    out = []
    with open("/proc/self/mountinfo") as f:
        for line in f:
            mountpoint = line.split()[4]
            if mountpoint == prefix or mountpoint.startswith(prefix.rstrip("/") + "/"):
                out.append(mountpoint)
    return out


def processes_mentioning(text: str) -> list[str]:
    """'pid: command line' of every process with `text` as one of its arguments."""
    found = []
    for pid in filter(str.isdigit, os.listdir("/proc")):
        try:
            with open(f"/proc/{pid}/cmdline", "rb") as f:
                argv = f.read().split(b"\0")
        except OSError:
            continue
        if any(text.encode() in a for a in argv):
            found.append(f"{pid}: {b' '.join(argv).decode(errors='replace').strip()}")
    return found


class TrackingClient(AirlockClient):
    """An AirlockClient that remembers every sandbox it created (for the leak check)."""

    def __init__(self, socket: str, created: set[str]) -> None:
        super().__init__(socket)
        self._created = created

    def create(self, *args, **kwargs) -> Session:  # type: ignore[override]
        s = super().create(*args, **kwargs)
        self._created.add(s.id)
        return s


class Daemon:
    """One airlockd process with its own socket and state dir under `base`."""

    def __init__(self, base: Path, name: str, allow_roots: tuple[str, ...] = (), extra: tuple[str, ...] = ()) -> None:
        self.binary = BUILD / "airlockd"
        self.base = base
        self.socket = str(base / f"{name}.sock")
        self.state_dir = str(base / f"{name}-state")
        self.log_path = base / f"{name}.log"
        self.allow_roots = allow_roots
        self.extra = extra  # more airlockd arguments
        self.proc: Optional[subprocess.Popen] = None
        self.created: set[str] = set()  # every sandbox id created through clients() or noted by a test

    @property
    def pid(self) -> int:
        assert self.proc is not None
        return self.proc.pid

    def start(self, timeout: float = 30.0) -> None:
        if not self.binary.exists():
            pytest.fail(f"{self.binary} not built (set AIRLOCK_BUILD to the build dir; "
                        "targets airlockd airlock-init python_stubs)")
        if not Path(STUBS, "airlock", "v1", "airlock_pb2.py").exists():
            pytest.fail(f"no Python stubs in {STUBS} (build the python_stubs target or set AIRLOCK_PYTHON_STUBS)")
        log = open(self.log_path, "ab")
        self.proc = subprocess.Popen(self.argv(), stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                                     start_new_session=True)
        log.close()
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                pytest.fail(f"airlockd exited with {self.proc.returncode} at start:\n{self.log_tail()}")
            if os.path.exists(self.socket):
                try:
                    with AirlockClient(self.socket) as c:
                        c.version()
                    return
                except Exception:
                    pass
            time.sleep(0.05)
        self.kill9()
        pytest.fail(f"airlockd did not answer on {self.socket} within {timeout}s:\n{self.log_tail()}")

    def argv(self) -> list[str]:
        argv = [str(self.binary), "--socket", self.socket, "--socket-mode", "0666", "--state-dir", self.state_dir]
        for r in self.allow_roots:
            argv += ["--allow-root", r]
        return argv + list(self.extra)

    def client(self) -> TrackingClient:
        return TrackingClient(self.socket, self.created)

    def destroy_all(self) -> None:
        """Destroys whatever sandboxes are left (a failed test's): a daemon with
        a keeper leaves running sandboxes behind on SIGTERM, by design."""
        with self.client() as c:
            for s in c.list(include_stopped=True):
                self.created.add(s.id)
                c.destroy(s.id)

    def stop(self, timeout: float = 30.0) -> Optional[int]:
        """SIGTERM (the daemon destroys its sandboxes), SIGKILL if it hangs. Returns its exit status."""
        if self.proc is None or self.proc.poll() is not None:
            return self.proc.returncode if self.proc else None
        self.proc.send_signal(signal.SIGTERM)
        try:
            return self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            stacks = self.stacks()
            self.proc.kill()
            self.proc.wait()
            raise AssertionError(f"airlockd ignored SIGTERM for {timeout}s:\n{self.log_tail()}\n{stacks}")

    def stacks(self) -> str:
        """The daemon's threads' stacks (gdb), for a hang."""
        if not shutil.which("gdb"):
            return "(no gdb for stacks)"
        try:
            r = subprocess.run(["gdb", "-p", str(self.pid), "-batch", "-ex", "thread apply all bt 12"],
                               capture_output=True, text=True, timeout=60)
        except subprocess.TimeoutExpired:
            return "(gdb timed out)"
        lines = [l for l in r.stdout.splitlines() if l.startswith(("Thread", "#"))]
        return "\n".join(lines[:400])

    def kill9(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()

    def rss_bytes(self) -> int:
        with open(f"/proc/{self.pid}/status") as f:
            for line in f:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1]) * 1024
        raise AssertionError("no VmRSS for airlockd")

    def log_tail(self, lines: int = 40) -> str:
        try:
            return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return "(no log)"

    def leftovers(self, wait: float = 5.0) -> list[str]:
        """What the stopped daemon left on the host, after giving asynchronous
        teardown (a keeper noticing the daemon is gone) `wait` seconds."""
        deadline = time.monotonic() + wait
        while True:
            problems = self._leftovers_now()
            if not problems or time.monotonic() >= deadline:
                return problems
            time.sleep(0.1)

    def _leftovers_now(self) -> list[str]:
        problems = []
        for cg in find_cgroups({f"airlock-{i}" for i in self.created}):
            problems.append(f"cgroup {cg}")
        sandboxes = Path(self.state_dir, "sandboxes")
        if sandboxes.is_dir():
            problems += [f"sandbox record {p}" for p in sandboxes.iterdir()]
        # The pool (a loop-backed btrfs under the state dir) stays mounted by
        # design, like LXD's; base_dir's teardown unmounts it.
        problems += [f"mount {m}" for m in mounts_under(str(self.base)) if not m.endswith("-state/pool")]
        # The daemon and anything forked from it without exec (a keeper) carry
        # the state dir in their command line.
        problems += [f"process {p}" for p in processes_mentioning(self.state_dir)]
        return problems


@pytest.fixture(scope="session")
def base_dir() -> Iterator[Path]:
    if not IS_ROOT:
        pytest.skip("needs root")
    # 0711: the unprivileged client of the owner test must reach the socket.
    d = Path(tempfile.mkdtemp(prefix="airlock-daemon-tests-"))
    os.chmod(d, 0o711)
    (d / "allowed").mkdir()
    yield d
    for m in reversed(mounts_under(str(d))):
        if m.endswith("-state/pool"):
            subprocess.run(["umount", m], check=False)  # autoclear detaches its loop device
    if os.environ.get("AIRLOCK_TEST_KEEP"):
        print(f"\nkept {d} (AIRLOCK_TEST_KEEP)")
    elif mounts_under(str(d)) or processes_mentioning(str(d)):
        print(f"\nkept {d}: something still uses it")
    else:
        shutil.rmtree(d, ignore_errors=True)


@contextlib.contextmanager
def own_daemon(base: Path, name: str, **kwargs) -> Iterator[Daemon]:
    """An airlockd of a test's own, started; afterwards (if the test passed) it
    must stop cleanly and leave nothing behind. One that died in the test is
    started again first, to take back and clean up what it left."""
    d = Daemon(base, name, **kwargs)
    d.start()
    try:
        yield d
    finally:
        if d.proc is not None and d.proc.poll() is not None:
            d.start()
        d.destroy_all()
        status = d.stop()
    assert status == 0, d.log_tail()
    left = d.leftovers()
    assert not left, left


@pytest.fixture(scope="session")
def daemon(base_dir: Path) -> Iterator[Daemon]:
    d = Daemon(base_dir, "main", allow_roots=(str(base_dir / "allowed"),))
    d.start()
    yield d
    problems = []
    if d.proc is not None and d.proc.poll() is not None:
        problems.append(f"airlockd died during the tests (status {d.proc.returncode}):\n{d.log_tail()}")
        d.start()  # on the same state dir: it takes back (or cleans up) what the dead one left
    d.destroy_all()
    status = d.stop()
    if status != 0:
        problems.append(f"airlockd exited with {status} on SIGTERM:\n{d.log_tail()}")
    problems += d.leftovers()
    assert not problems, "after the tests:\n" + "\n".join(problems)


@pytest.fixture(scope="session")
def client(daemon: Daemon) -> Iterator[TrackingClient]:
    c = daemon.client()
    yield c
    c.close()


@pytest.fixture(scope="session")
def sandbox(client: TrackingClient) -> Iterator[Session]:
    """One sandbox shared by the tests that only look around in it."""
    s = client.create(labels={"test": "shared"})
    yield s
    s.delete()


@pytest.fixture
def fresh(client: TrackingClient) -> Iterator[Session]:
    """A sandbox of the test's own, destroyed after it."""
    s = client.create(labels={"test": "fresh"})
    yield s
    try:
        s.delete()
    except Exception:
        pass
