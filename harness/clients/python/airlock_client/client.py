"""A small, typed client for airlockd (the airlock.v1 gRPC API on a unix socket).

The shape follows what agent SDKs expect of a sandbox provider: a client that
creates, resumes and lists sandboxes, and a Session per sandbox with exec
(buffered, streaming, PTY, background), file calls, workspace tar transfer,
pause/resume, stats and events.

The protobuf/gRPC stubs are the ones the build generates (protoc + Debian's
grpc_python_plugin) as ``airlock/v1/airlock_pb2{,_grpc}.py``; see load_stubs()
for where they are looked for.
"""

from __future__ import annotations

import importlib
import os
import queue
import signal as _signal
import sys
import threading
from dataclasses import dataclass, field
from types import ModuleType
from typing import Any, Callable, Iterable, Iterator, Mapping, Optional, Sequence, Union

import grpc

DEFAULT_SOCKET = "/run/airlock/airlockd.sock"
STUBS_ENV = "AIRLOCK_PYTHON_STUBS"
CHUNK_SIZE = 64 * 1024  # WriteFile / Upload message size

# --- stubs -------------------------------------------------------------------

_stubs_lock = threading.Lock()
_stubs: Optional[tuple[ModuleType, ModuleType]] = None


def _has_stubs(directory: str) -> bool:
    return os.path.isfile(os.path.join(directory, "airlock", "v1", "airlock_pb2.py")) and os.path.isfile(
        os.path.join(directory, "airlock", "v1", "airlock_pb2_grpc.py"))


def load_stubs(path: Optional[str] = None) -> tuple[ModuleType, ModuleType]:
    """Imports the generated stubs and returns (airlock_pb2, airlock_pb2_grpc).

    The generated code imports itself as ``airlock.v1.airlock_pb2``, so the
    directory that holds ``airlock/v1/`` goes on sys.path. It is, in order:
    ``path`` if given; else $AIRLOCK_PYTHON_STUBS if set (e.g.
    ``<build>/python``); else ``airlock_client/_stubs`` (stubs copied into the
    package at build time); else whatever ``airlock.v1`` is importable already.
    A path that is given but holds no stubs is an error, not a fallback.
    """
    global _stubs
    with _stubs_lock:
        if _stubs is not None and path is None:
            return _stubs
        chosen: Optional[str] = None
        for origin, candidate in (("path argument", path), (STUBS_ENV, os.environ.get(STUBS_ENV))):
            if candidate:
                if not _has_stubs(candidate):
                    raise ImportError(f"airlock stubs: {origin} {candidate!r} has no airlock/v1/airlock_pb2.py "
                                      "and airlock_pb2_grpc.py (build the python_stubs target; they land in <build>/python)")
                chosen = candidate
                break
        if chosen is None:
            bundled = os.path.join(os.path.dirname(os.path.abspath(__file__)), "_stubs")
            if _has_stubs(bundled):
                chosen = bundled
        if chosen is not None:
            chosen = os.path.abspath(chosen)
            if chosen not in sys.path:
                sys.path.insert(0, chosen)
        try:
            pb2 = importlib.import_module("airlock.v1.airlock_pb2")
            pb2_grpc = importlib.import_module("airlock.v1.airlock_pb2_grpc")
        except ImportError as e:
            raise ImportError(f"airlock stubs not found: set {STUBS_ENV} to <build>/python, pass stubs_path=, "
                              f"or copy <build>/python/airlock into airlock_client/_stubs/ ({e})") from e
        if chosen is not None and pb2.__file__ and not os.path.abspath(pb2.__file__).startswith(chosen + os.sep):
            raise ImportError(f"airlock stubs: asked for {chosen!r} but airlock.v1 was already imported from "
                              f"{os.path.dirname(pb2.__file__)!r}")
        _stubs = (pb2, pb2_grpc)
        return _stubs


# --- errors ------------------------------------------------------------------


class AirlockError(Exception):
    """A failed call. ``code`` is the gRPC status name (``"NOT_FOUND"``),
    ``message`` the daemon's text, verbatim (it names the field or step)."""

    def __init__(self, code: str, message: str) -> None:
        super().__init__(f"{code}: {message}")
        self.code = code
        self.message = message


class InvalidArgument(AirlockError):
    pass


class NotFound(AirlockError):
    pass


class AlreadyExists(AirlockError):
    pass


class PermissionDenied(AirlockError):
    pass


class FailedPrecondition(AirlockError):
    pass


class Unimplemented(AirlockError):
    pass


class Unavailable(AirlockError):
    pass


_ERRORS: dict[str, type[AirlockError]] = {
    "INVALID_ARGUMENT": InvalidArgument,
    "NOT_FOUND": NotFound,
    "ALREADY_EXISTS": AlreadyExists,
    "PERMISSION_DENIED": PermissionDenied,
    "FAILED_PRECONDITION": FailedPrecondition,
    "UNIMPLEMENTED": Unimplemented,
    "UNAVAILABLE": Unavailable,
}


def _error(e: grpc.RpcError) -> AirlockError:
    code_obj = e.code() if hasattr(e, "code") else None
    code = code_obj.name if code_obj is not None else "UNKNOWN"
    message = e.details() if hasattr(e, "details") else str(e)
    return _ERRORS.get(code, AirlockError)(code, message or "")


def _call(fn: Callable[..., Any], *args: Any, **kwargs: Any) -> Any:
    try:
        return fn(*args, **kwargs)
    except grpc.RpcError as e:
        raise _error(e) from None


def _stream(it: Iterator[Any]) -> Iterator[Any]:
    """Iterates a server stream, turning gRPC errors into AirlockError."""
    try:
        yield from it
    except grpc.RpcError as e:
        raise _error(e) from None


# --- plain data ----------------------------------------------------------------


def _enum_name(enum: Any, value: int, prefix: str) -> str:
    try:
        name = enum.Name(value)
    except ValueError:
        return str(value)
    return name[len(prefix):] if name.startswith(prefix) else name


@dataclass
class Limits:
    memory_bytes: int = 0  # 0: none
    pids: int = 0
    cpus: float = 0.0
    disk_bytes: int = 0
    nofile: int = 0  # 0: 1024

    def _pb(self, pb: ModuleType) -> Any:
        return pb.Limits(memory_bytes=self.memory_bytes, pids=self.pids, cpus=self.cpus,
                         disk_bytes=self.disk_bytes, nofile=self.nofile)

    @classmethod
    def _from(cls, m: Any) -> "Limits":
        return cls(m.memory_bytes, m.pids, m.cpus, m.disk_bytes, m.nofile)


@dataclass
class ManifestEntry:
    """One workspace entry; set exactly one source (content, empty_dir,
    host_bind, host_copy, output_dir)."""

    path: str
    content: Optional[Union[bytes, str]] = None
    empty_dir: bool = False
    host_bind: Optional[str] = None
    host_copy: Optional[str] = None
    output_dir: Optional[str] = None
    mode: int = 0

    def _pb(self, pb: ModuleType, index: int) -> Any:
        m = pb.ManifestEntry(path=self.path, mode=self.mode)
        sources = [n for n in ("content", "host_bind", "host_copy", "output_dir") if getattr(self, n) is not None]
        if self.empty_dir:
            sources.append("empty_dir")
        if len(sources) > 1:
            raise ValueError(f"manifest.entries[{index}]: more than one source ({', '.join(sources)})")
        if self.content is not None:
            m.content = self.content.encode() if isinstance(self.content, str) else bytes(self.content)
        elif self.host_bind is not None:
            m.host_bind = self.host_bind
        elif self.host_copy is not None:
            m.host_copy = self.host_copy
        elif self.output_dir is not None:
            m.output_dir = self.output_dir
        elif self.empty_dir:
            m.empty_dir = True
        return m


@dataclass
class User:
    name: str
    uid: int
    gid: int = 0
    home: str = ""


@dataclass
class Manifest:
    root: str = ""  # default /workspace
    entries: list[ManifestEntry] = field(default_factory=list)
    environment: dict[str, str] = field(default_factory=dict)
    users: list[User] = field(default_factory=list)

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> "Manifest":
        entries = [e if isinstance(e, ManifestEntry) else ManifestEntry(**e) for e in d.get("entries", [])]
        users = [u if isinstance(u, User) else User(**u) for u in d.get("users", [])]
        return cls(root=d.get("root", ""), entries=entries, environment=dict(d.get("environment", {})), users=users)

    def _pb(self, pb: ModuleType) -> Any:
        m = pb.Manifest(root=self.root)
        for i, e in enumerate(self.entries):
            m.entries.append(e._pb(pb, i))
        m.environment.update(self.environment)
        for u in self.users:
            m.users.append(pb.User(name=u.name, uid=u.uid, gid=u.gid, home=u.home))
        return m


@dataclass
class SandboxInfo:
    id: str
    owner_uid: int
    state: str  # RUNNING, PAUSED, STOPPED, DESTROYED
    image: str
    limits: Limits
    network: str
    labels: dict[str, str]
    created_unix_ms: int
    expires_unix_ms: int
    idle_timeout_ms: int
    stop_reason: str
    workspace: str
    hostname: str
    seccomp_profile: str
    egress: dict[str, Any] = field(default_factory=dict)  # allow, secrets, transparent (network PROXY)
    generation: int = 1  # one more each time recovery rebuilt it from a snapshot
    rebuilt_from: str = ""
    exposed_ports: dict[int, str] = field(default_factory=dict)  # sandbox port -> "host:port"
    checkpointable: bool = False  # full snapshots (its processes too) can be taken
    processes_restored: bool = False  # its processes came back from a full snapshot

    @classmethod
    def _from(cls, pb: ModuleType, m: Any) -> "SandboxInfo":
        return cls(id=m.id, owner_uid=m.owner_uid, state=_enum_name(pb.SandboxState, m.state, "SANDBOX_STATE_"),
                   image=m.image, limits=Limits._from(m.limits),
                   network=_enum_name(pb.NetworkMode, m.network, "NETWORK_MODE_"), labels=dict(m.labels),
                   created_unix_ms=m.created_unix_ms, expires_unix_ms=m.expires_unix_ms,
                   idle_timeout_ms=m.idle_timeout_ms, stop_reason=m.stop_reason, workspace=m.workspace,
                   hostname=m.hostname, seccomp_profile=m.seccomp_profile,
                   egress={"allow": list(m.egress.allow), "secrets": list(m.egress.secrets),
                           "transparent": m.egress.transparent},
                   exposed_ports={p.port: p.host_address for p in m.exposed_ports},
                   generation=m.generation, rebuilt_from=m.rebuilt_from, checkpointable=m.checkpointable,
                   processes_restored=m.processes_restored)


@dataclass
class PatchResult:
    files: list[tuple[str, str, str]]  # (path, added|updated|deleted, moved_from)
    summary: str  # what the apply_patch tool reports to the model


@dataclass
class SnapshotInfo:
    id: str
    sandbox_id: str
    owner_uid: int
    created_unix_ms: int
    bytes: int
    reused: bool  # nothing had changed: the previous snapshot again
    flush_us: int
    frozen_us: int
    contents: str
    labels: dict[str, str]
    image: str
    full: bool = False  # its processes too (CRIU images sealed by the daemon)
    process_images_bytes: int = 0
    seal_us: int = 0  # full: hashing and sealing its images

    @classmethod
    def _from(cls, m: Any) -> "SnapshotInfo":
        return cls(m.id, m.sandbox_id, m.owner_uid, m.created_unix_ms, m.bytes, m.reused, m.flush_us, m.frozen_us,
                   m.contents, dict(m.labels), m.image, m.full, m.process_images_bytes, m.seal_us)


@dataclass
class ExitStatus:
    code: int = 0
    signal: int = 0  # the signal that ended it; 0 if it exited
    timed_out: bool = False
    oom_killed: bool = False
    exec_error: str = ""  # it never ran
    reported_by: str = ""  # "init" or "kernel"

    @classmethod
    def _from(cls, m: Any) -> "ExitStatus":
        return cls(m.code, m.signal, m.timed_out, m.oom_killed, m.exec_error, m.reported_by)


@dataclass
class ExecResult:
    exit_code: int
    signal: int
    stdout: bytes
    stderr: bytes
    timed_out: bool
    oom_killed: bool
    stdout_truncated: bool
    stderr_truncated: bool
    exec_error: str
    reported_by: str
    pid: int
    generation: int = 0  # the sandbox's when it ran (see SandboxInfo.generation)
    stdout_omitted_bytes: int = 0  # what the cap left out
    stderr_omitted_bytes: int = 0

    @property
    def truncated(self) -> bool:
        return self.stdout_truncated or self.stderr_truncated

    @property
    def ok(self) -> bool:
        return self.exit_code == 0 and self.signal == 0 and not self.exec_error


@dataclass
class OutputChunk:
    stream: str  # "stdout" or "stderr" (with a tty everything is stdout)
    data: bytes


@dataclass
class BackgroundProcess:
    """A handle to a StartProcess command."""

    sandbox_id: str
    process_id: str
    pid: int
    argv: list[str]
    tty: bool = False


@dataclass
class PtyProcess(BackgroundProcess):
    """A background process with a terminal (stdout carries everything it printed)."""


@dataclass
class ProcessStatus:
    process_id: str
    pid: int
    running: bool
    exit: Optional[ExitStatus]
    stdout_buffered: int
    stderr_buffered: int
    started_unix_ms: int

    @classmethod
    def _from(cls, m: Any) -> "ProcessStatus":
        return cls(m.process_id, m.pid, m.running, ExitStatus._from(m.exit) if m.HasField("exit") else None,
                   m.stdout_buffered, m.stderr_buffered, m.started_unix_ms)


@dataclass
class ProcessOutput:
    stdout: bytes
    stderr: bytes
    eof: bool  # it ended and everything was read
    status: ProcessStatus


@dataclass
class FileInfo:
    name: str
    type: str  # FILE, DIRECTORY, SYMLINK, UNSPECIFIED (device, fifo, socket)
    mode: int
    size: int
    mtime_unix_ms: int
    uid: int
    gid: int
    link_target: str

    @classmethod
    def _from(cls, pb: ModuleType, m: Any) -> "FileInfo":
        return cls(m.name, _enum_name(pb.FileType, m.type, "FILE_TYPE_"), m.mode, m.size, m.mtime_unix_ms, m.uid,
                   m.gid, m.link_target)

    @property
    def is_dir(self) -> bool:
        return self.type == "DIRECTORY"


@dataclass
class Stats:
    id: str
    cpu_usage_ns: int
    memory_bytes: int
    memory_limit_bytes: int
    pids: int
    pids_limit: int
    disk_bytes: int
    disk_limit_bytes: int
    oom_kills: int
    pids_limit_hits: int


@dataclass
class Event:
    seq: int
    sandbox_id: str
    type: str  # CREATED, EXITED, OOM, LIMIT_HIT, TIMEOUT, IDLE_STOPPED, DESTROYED, PAUSED, RESUMED, EGRESS
    message: str
    unix_ms: int
    # EGRESS: kind, destination, port, address, allowed, reason, bytes_out, bytes_in, secrets
    egress: Optional[dict[str, Any]] = None


@dataclass
class Version:
    version: str
    init_protocol: int


_WRITE_MODES = {"atomic": 1, "truncate": 2, "append": 3, "create": 4}

Argv = Union[str, Sequence[str]]


def _argv(argv: Argv) -> list[str]:
    """A string is a shell command line (``/bin/sh -c``); a sequence is argv."""
    if isinstance(argv, str):
        return ["/bin/sh", "-c", argv]
    return [str(a) for a in argv]


def _bytes(data: Union[bytes, bytearray, memoryview, str]) -> bytes:
    return data.encode() if isinstance(data, str) else bytes(data)


# --- streams -------------------------------------------------------------------


class EventStream:
    """Events as they happen; iterate it, cancel() (or leave a ``with``) to stop."""

    def __init__(self, pb: ModuleType, call: Any) -> None:
        self._pb = pb
        self._call = call
        self._cancelled = False

    def __iter__(self) -> "EventStream":
        return self

    def __next__(self) -> Event:
        try:
            m = next(self._call)
        except grpc.RpcError as e:
            if self._cancelled and e.code() == grpc.StatusCode.CANCELLED:
                raise StopIteration from None
            raise _error(e) from None
        egress = None
        if m.HasField("egress"):
            e = m.egress
            egress = {"kind": e.kind, "destination": e.destination, "port": e.port, "address": e.address,
                      "allowed": e.allowed, "reason": e.reason, "bytes_out": e.bytes_out, "bytes_in": e.bytes_in,
                      "secrets": list(e.secrets)}
        return Event(m.seq, m.sandbox_id, _enum_name(self._pb.EventType, m.type, "EVENT_TYPE_"), m.message, m.unix_ms,
                     egress)

    def cancel(self) -> None:
        self._cancelled = True
        self._call.cancel()

    def __enter__(self) -> "EventStream":
        return self

    def __exit__(self, *exc: Any) -> None:
        self.cancel()


class ExecStream:
    """An interactive command (the bidi Exec call).

    Iterate it for OutputChunk values in the order the daemon sent them; the
    iteration ends after the command's exit, which is then in ``exit``.
    send_stdin / close_stdin / signal / resize may be called from any thread.
    The request side is a queue: once the exit arrives (or on cancel) the
    client half-closes it, as the daemon expects.
    """

    _DONE = object()

    @property
    def generation(self) -> int:
        """The sandbox's generation, as the daemon sent it with this command's output."""
        for key, value in self._call.initial_metadata() or ():
            if key == "airlock-generation":
                return int(value)
        return 0

    def __init__(self, pb: ModuleType, stub: Any, start: Any) -> None:
        self._pb = pb
        self._queue: "queue.Queue[Any]" = queue.Queue()
        self._lock = threading.Lock()
        self._closed = False
        self._finished = False
        self.pid: int = 0
        self.exit: Optional[ExitStatus] = None

        def requests() -> Iterator[Any]:
            yield pb.ExecInput(start=start)
            while True:
                item = self._queue.get()
                if item is self._DONE:
                    return
                yield item

        self._call = stub.Exec(requests())
        self._pending: list[OutputChunk] = []
        # The daemon answers with the pid once the command runs; a command
        # that never ran (no such program) answers with its exit at once;
        # a failed call (no sandbox, a bad field) raises here, from exec_stream().
        try:
            first = next(self._call)
        except grpc.RpcError as e:
            self._finished = True
            self._half_close()
            raise _error(e) from None
        except StopIteration:
            self._finished = True
            self._half_close()
            raise AirlockError("UNKNOWN", "exec: the daemon ended the stream before the command started") from None
        kind = first.WhichOneof("output")
        if kind == "started_pid":
            self.pid = first.started_pid
        elif kind == "exit":
            self.exit = ExitStatus._from(first.exit)
            self._half_close()
        elif kind in ("stdout", "stderr"):
            self._pending.append(OutputChunk(kind, getattr(first, kind)))

    def _half_close(self) -> None:
        with self._lock:
            if self._closed:
                return
            self._closed = True
        self._queue.put(self._DONE)

    def _send(self, message: Any) -> None:
        with self._lock:
            if self._closed:
                raise FailedPrecondition("FAILED_PRECONDITION", "exec: the command has ended")
            self._queue.put(message)

    def send_stdin(self, data: Union[bytes, str]) -> None:
        self._send(self._pb.ExecInput(stdin=_bytes(data)))

    def close_stdin(self) -> None:
        self._send(self._pb.ExecInput(close_stdin=True))

    def signal(self, signo: int) -> None:
        self._send(self._pb.ExecInput(signal=self._pb.Signal(signo=signo)))

    def resize(self, rows: int, cols: int) -> None:
        self._send(self._pb.ExecInput(resize=self._pb.TerminalSize(rows=rows, cols=cols)))

    def __iter__(self) -> "ExecStream":
        return self

    def __next__(self) -> OutputChunk:
        if self._pending:
            return self._pending.pop(0)
        while True:
            if self._finished:
                raise StopIteration
            try:
                m = next(self._call)
            except StopIteration:
                self._finished = True
                self._half_close()
                if self.exit is None:
                    raise AirlockError("UNKNOWN", "exec: the stream ended without an exit status") from None
                raise
            except grpc.RpcError as e:
                self._finished = True
                self._half_close()
                raise _error(e) from None
            kind = m.WhichOneof("output")
            if kind == "stdout":
                return OutputChunk("stdout", m.stdout)
            if kind == "stderr":
                return OutputChunk("stderr", m.stderr)
            if kind == "exit":
                self.exit = ExitStatus._from(m.exit)
                self._half_close()

    def wait(self) -> ExitStatus:
        """Reads (and drops) the rest of the output; returns the exit status."""
        for _ in self:
            pass
        assert self.exit is not None
        return self.exit

    def collect(self) -> tuple[bytes, bytes, ExitStatus]:
        """Reads the rest of the output: (stdout, stderr, exit)."""
        out, err = bytearray(), bytearray()
        for chunk in self:
            (out if chunk.stream == "stdout" else err).extend(chunk.data)
        assert self.exit is not None
        return bytes(out), bytes(err), self.exit

    def cancel(self) -> None:
        """Abandons the call; the daemon kills the command."""
        self._finished = True
        self._half_close()
        self._call.cancel()

    def __enter__(self) -> "ExecStream":
        return self

    def __exit__(self, *exc: Any) -> None:
        if not self._finished:
            self.cancel()


# --- client and session ----------------------------------------------------------


class AirlockClient:
    """A connection to airlockd. Thread-safe; one per process is plenty."""

    def __init__(self, socket: str = DEFAULT_SOCKET, *, stubs_path: Optional[str] = None) -> None:
        self.socket = socket
        self._pb, pb_grpc = load_stubs(stubs_path)
        target = "unix:" + os.path.abspath(socket)
        self._channel = grpc.insecure_channel(target, options=[
            # Run returns up to 64 MiB per stream.
            ("grpc.max_receive_message_length", 160 << 20),
            ("grpc.max_send_message_length", 16 << 20),
        ])
        self._stub = pb_grpc.AirlockStub(self._channel)

    def close(self) -> None:
        self._channel.close()

    def __enter__(self) -> "AirlockClient":
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()

    @property
    def pb(self) -> ModuleType:
        """The generated airlock_pb2 module, for calls this wrapper doesn't cover."""
        return self._pb

    @property
    def stub(self) -> Any:
        return self._stub

    def create(self, image: str = "", manifest: Union[Manifest, Mapping[str, Any], None] = None,
               limits: Union[Limits, Mapping[str, Any], None] = None, labels: Optional[Mapping[str, str]] = None,
               lifetime_ms: int = 0, idle_timeout_ms: int = 0, *, hostname: str = "", seccomp_profile: str = "",
               network: str = "", egress: Optional[Mapping[str, Any]] = None,
               expose_ports: Sequence[int] = (), snapshots: bool = False,
               recovery: Optional[Mapping[str, Any]] = None, checkpointable: bool = False) -> "Session":
        """Builds and starts a sandbox (image default "host"); returns once it runs commands.

        network="proxy" with egress={"allow": [...], "secrets": [...], "transparent": bool}:
        out only through the daemon's egress proxy. expose_ports: sandbox ports the
        daemon forwards from its expose address (see SandboxInfo.exposed_ports)."""
        pb = self._pb
        req = pb.CreateRequest(image=image, lifetime_ms=lifetime_ms, idle_timeout_ms=idle_timeout_ms,
                               hostname=hostname, seccomp_profile=seccomp_profile)
        if manifest is not None:
            m = manifest if isinstance(manifest, Manifest) else Manifest.from_dict(manifest)
            req.manifest.CopyFrom(m._pb(pb))
        if limits is not None:
            lim = limits if isinstance(limits, Limits) else Limits(**limits)
            req.limits.CopyFrom(lim._pb(pb))
        if labels:
            req.labels.update(labels)
        if network:
            req.network = pb.NetworkMode.Value("NETWORK_MODE_" + network.upper())
        if egress is not None:
            unknown = set(egress) - {"allow", "secrets", "transparent"}
            if unknown:
                raise ValueError(f"egress: unknown keys {sorted(unknown)}")
            req.egress.allow.extend(egress.get("allow", []))
            req.egress.secrets.extend(egress.get("secrets", []))
            req.egress.transparent = bool(egress.get("transparent", False))
        req.expose_ports.extend(expose_ports)
        req.snapshots = snapshots
        req.checkpointable = checkpointable
        if recovery is not None:
            unknown = set(recovery) - {"rebuild", "max_rebuilds", "snapshot_every_ms", "snapshot_after_exec", "full"}
            if unknown:
                raise ValueError(f"recovery: unknown keys {sorted(unknown)}")
            req.recovery.rebuild = bool(recovery.get("rebuild", False))
            req.recovery.max_rebuilds = int(recovery.get("max_rebuilds", 0))
            req.recovery.snapshot_every_ms = int(recovery.get("snapshot_every_ms", 0))
            req.recovery.snapshot_after_exec = bool(recovery.get("snapshot_after_exec", False))
            req.recovery.full = bool(recovery.get("full", False))
        info = SandboxInfo._from(pb, _call(self._stub.Create, req))
        return Session(self, info)

    def get(self, sandbox_id: str) -> SandboxInfo:
        return SandboxInfo._from(self._pb, _call(self._stub.Get, self._pb.SandboxRef(id=sandbox_id)))

    def resume(self, sandbox_id: str) -> "Session":
        """Reattaches to a sandbox; FailedPrecondition if it is no longer running."""
        info = self.get(sandbox_id)
        if info.state not in ("RUNNING", "PAUSED"):
            raise FailedPrecondition("FAILED_PRECONDITION",
                                     f"sandbox {sandbox_id} is {info.state.lower()}: {info.stop_reason}")
        return Session(self, info)

    def list(self, labels: Optional[Mapping[str, str]] = None, include_stopped: bool = False) -> list[SandboxInfo]:
        req = self._pb.ListRequest(include_stopped=include_stopped)
        if labels:
            req.labels.update(labels)
        return [SandboxInfo._from(self._pb, s) for s in _call(self._stub.List, req).sandboxes]

    def destroy(self, sandbox_id: str) -> SandboxInfo:
        return SandboxInfo._from(self._pb, _call(self._stub.Destroy, self._pb.SandboxRef(id=sandbox_id)))

    def events(self, sandbox_id: str = "", since_seq: int = 0, from_start: bool = False) -> EventStream:
        """Events with seq > since_seq (0: only new ones; from_start: the whole
        stored log), then as they happen."""
        call = self._stub.Events(self._pb.EventsRequest(sandbox_id=sandbox_id, since_seq=since_seq,
                                                        from_start=from_start))
        return EventStream(self._pb, call)

    def version(self) -> Version:
        v = _call(self._stub.Version, self._pb.Empty())
        return Version(v.version, v.init_protocol)

    # Filesystem snapshots (sandboxes created with snapshots=True or a disk limit).
    def snapshot(self, sandbox_id: str, labels: Optional[Mapping[str, str]] = None, keep_last: int = 0,
                 full: bool = False) -> SnapshotInfo:
        """keep_last: keep only the sandbox's newest N snapshots (0: the daemon's default).
        full: its processes too, with CRIU (a sandbox created checkpointable)."""
        req = self._pb.SnapshotRequest(sandbox_id=sandbox_id, keep_last=keep_last, full=full)
        if labels:
            req.labels.update(labels)
        return SnapshotInfo._from(_call(self._stub.Snapshot, req))

    def list_snapshots(self, sandbox_id: str = "") -> list[SnapshotInfo]:
        r = _call(self._stub.ListSnapshots, self._pb.ListSnapshotsRequest(sandbox_id=sandbox_id))
        return [SnapshotInfo._from(s) for s in r.snapshots]

    def delete_snapshot(self, snapshot_id: str) -> SnapshotInfo:
        return SnapshotInfo._from(_call(self._stub.DeleteSnapshot, self._pb.SnapshotRef(id=snapshot_id)))

    def restore(self, snapshot_id: str, labels: Optional[Mapping[str, str]] = None,
                filesystem_only: bool = False) -> "Session":
        """A new sandbox on a writable copy of the snapshot (the source's image, limits and network).
        A full snapshot's processes come back too (in the source's id range: the source must be
        gone), unless filesystem_only."""
        req = self._pb.RestoreRequest(snapshot_id=snapshot_id, filesystem_only=filesystem_only)
        if labels:
            req.labels.update(labels)
        return Session(self, SandboxInfo._from(self._pb, _call(self._stub.Restore, req)))

    # Skills (the daemon's skills_dir): progressive disclosure.
    def list_skills(self) -> list[tuple[str, str]]:
        """(name, description) of every skill the daemon serves."""
        return [(k.name, k.description) for k in _call(self._stub.ListSkills, self._pb.Empty()).skills]

    def get_skill(self, name: str) -> dict[str, Any]:
        """{name, description, body, files}: SKILL.md's body and the names of its other files."""
        k = _call(self._stub.GetSkill, self._pb.SkillRef(name=name))
        return {"name": k.name, "description": k.description, "body": k.body, "files": list(k.files)}

    def read_skill_file(self, name: str, path: str) -> bytes:
        return _call(self._stub.ReadSkillFile, self._pb.SkillFileRef(name=name, path=path)).data

    def export_snapshot(self, snapshot_id: str, path: str) -> int:
        """Writes the snapshot's archive to `path`; returns its size."""
        size = 0
        with open(path, "wb") as f:
            for chunk in _stream(self._stub.ExportSnapshot(self._pb.SnapshotRef(id=snapshot_id))):
                f.write(chunk.data)
                size += len(chunk.data)
        return size

    def import_snapshot(self, path: str, labels: Optional[Mapping[str, str]] = None) -> SnapshotInfo:
        """Imports a snapshot archive (filesystem only) as a snapshot of the caller's."""
        pb = self._pb

        def requests() -> Iterator[Any]:
            first = True
            with open(path, "rb") as f:
                while True:
                    data = f.read(1 << 20)
                    if not data and not first:
                        return
                    m = pb.ImportSnapshotRequest(data=data)
                    if first and labels:
                        m.labels.update(labels)
                    first = False
                    yield m
                    if not data:
                        return

        return SnapshotInfo._from(_call(self._stub.ImportSnapshot, requests()))

    def fork(self, snapshot_id: str, count: int, labels: Optional[Mapping[str, str]] = None) -> list["Session"]:
        req = self._pb.ForkRequest(snapshot_id=snapshot_id, count=count)
        if labels:
            req.labels.update(labels)
        r = _call(self._stub.Fork, req)
        return [Session(self, SandboxInfo._from(self._pb, m)) for m in r.sandboxes]


class Session:
    """One sandbox. Paths are absolute inside the sandbox or relative to its workspace."""

    def __init__(self, client: AirlockClient, info: SandboxInfo) -> None:
        self.client = client
        self.info = info
        self._pb = client._pb
        self._stub = client._stub
        self._generation = info.generation

    @property
    def id(self) -> str:
        return self.info.id

    @property
    def generation(self) -> int:
        """The sandbox's generation as the last reply said it: one more each time recovery rebuilt it."""
        return max(self._generation, self.info.generation)

    def _saw(self, call: Any) -> None:
        for key, value in call.initial_metadata() or ():
            if key == "airlock-generation":
                self._generation = int(value)

    def _rpc(self, method: Any, request: Any) -> Any:
        """A unary reply; the generation airlockd sent with it is kept."""
        try:
            reply, call = method.with_call(request)
        except grpc.RpcError as e:
            raise _error(e) from None
        self._saw(call)
        return reply

    def _chunks(self, call: Any) -> bytes:
        data = b"".join(c.data for c in _stream(call))
        self._saw(call)
        return data

    @property
    def sandbox_id(self) -> str:
        return self.info.id

    @property
    def workspace(self) -> str:
        return self.info.workspace

    def __repr__(self) -> str:
        return f"Session(id={self.id!r}, state={self.info.state!r}, workspace={self.workspace!r})"

    # --- lifecycle ---

    def refresh(self) -> SandboxInfo:
        self.info = self.client.get(self.id)
        return self.info

    def delete(self) -> SandboxInfo:
        """Kills every process and removes every host resource of the sandbox."""
        self.info = self.client.destroy(self.id)
        return self.info

    def pause(self) -> SandboxInfo:
        self.info = SandboxInfo._from(self._pb, self._rpc(self._stub.Pause, self._pb.SandboxRef(id=self.id)))
        return self.info

    def resume(self) -> SandboxInfo:
        self.info = SandboxInfo._from(self._pb, self._rpc(self._stub.Resume, self._pb.SandboxRef(id=self.id)))
        return self.info

    def snapshot(self, labels: Optional[Mapping[str, str]] = None, keep_last: int = 0,
                 full: bool = False) -> SnapshotInfo:
        return self.client.snapshot(self.id, labels, keep_last, full)

    def stats(self) -> Stats:
        s = self._rpc(self._stub.Stats, self._pb.SandboxRef(id=self.id))
        return Stats(s.id, s.cpu_usage_ns, s.memory_bytes, s.memory_limit_bytes, s.pids, s.pids_limit, s.disk_bytes,
                     s.disk_limit_bytes, s.oom_kills, s.pids_limit_hits)

    def events(self, since_seq: int = 0, from_start: bool = False) -> EventStream:
        return self.client.events(self.id, since_seq, from_start)

    def serialize(self) -> dict[str, Any]:
        """Enough to reattach from another process: see deserialize()."""
        return {"sandbox_id": self.id, "socket": self.client.socket, "workspace": self.workspace,
                "image": self.info.image, "labels": dict(self.info.labels)}

    @classmethod
    def deserialize(cls, client: Optional[AirlockClient], data: Mapping[str, Any]) -> "Session":
        """Reattaches to a serialized session (a new client on its socket if ``client`` is None)."""
        if client is None:
            client = AirlockClient(data.get("socket") or DEFAULT_SOCKET)
        return client.resume(data["sandbox_id"])

    # --- commands ---

    def _command(self, argv: Argv, env: Optional[Mapping[str, str]], cwd: str, user: str, timeout_ms: int,
                 tty: bool = False, rows: int = 0, cols: int = 0) -> Any:
        c = self._pb.Command(sandbox_id=self.id, argv=_argv(argv), cwd=cwd, user=user, tty=tty,
                             timeout_ms=timeout_ms)
        if env:
            c.env.update(env)
        if tty or rows or cols:
            c.size.rows, c.size.cols = rows, cols
        return c

    def exec(self, argv: Argv, *, env: Optional[Mapping[str, str]] = None, cwd: str = "", user: str = "",
             timeout_ms: int = 0, stdin: Optional[Union[bytes, str]] = None, max_output_bytes: int = 0,
             keep_tail: bool = False) -> ExecResult:
        """Runs a command to its end (unary Run); output bounded per stream
        (max_output_bytes, default 1 MiB, at most 64 MiB). keep_tail: over the
        cap, keep the head and the tail with "[... N bytes omitted ...]" between."""
        req = self._pb.RunRequest(command=self._command(argv, env, cwd, user, timeout_ms),
                                  max_output_bytes=max_output_bytes, keep_tail=keep_tail)
        if stdin is not None:
            req.stdin = _bytes(stdin)
        r = self._rpc(self._stub.Run, req)
        e = r.exit
        return ExecResult(exit_code=e.code, signal=e.signal, stdout=r.stdout, stderr=r.stderr, timed_out=e.timed_out,
                          oom_killed=e.oom_killed, stdout_truncated=r.stdout_truncated,
                          stderr_truncated=r.stderr_truncated, exec_error=e.exec_error, reported_by=e.reported_by,
                          pid=r.pid, generation=r.generation, stdout_omitted_bytes=r.stdout_omitted_bytes,
                          stderr_omitted_bytes=r.stderr_omitted_bytes)

    def exec_stream(self, argv: Argv, *, env: Optional[Mapping[str, str]] = None, cwd: str = "", user: str = "",
                    timeout_ms: int = 0, stdin: bool = False, tty: bool = False, rows: int = 0,
                    cols: int = 0) -> ExecStream:
        """Starts an interactive command (bidi Exec). With stdin=True (implied
        by tty) its stdin stays open for send_stdin(); else it reads EOF."""
        start = self._pb.ExecStart(command=self._command(argv, env, cwd, user, timeout_ms, tty, rows, cols),
                                   stdin=stdin)
        return ExecStream(self._pb, self._stub, start)

    def start_process(self, argv: Argv, *, stdin: bool = False, tty: bool = False, rows: int = 0, cols: int = 0,
                      env: Optional[Mapping[str, str]] = None, cwd: str = "", user: str = "",
                      timeout_ms: int = 0) -> BackgroundProcess:
        """Starts a background command; its output is buffered in the daemon (read_output)."""
        req = self._pb.StartProcessRequest(command=self._command(argv, env, cwd, user, timeout_ms, tty, rows, cols),
                                           stdin=stdin)
        p = self._rpc(self._stub.StartProcess, req)
        kind = PtyProcess if tty else BackgroundProcess
        return kind(sandbox_id=p.sandbox_id, process_id=p.process_id, pid=p.pid, argv=list(p.argv), tty=tty)

    def pty_start(self, argv: Argv, rows: int = 24, cols: int = 80, *, env: Optional[Mapping[str, str]] = None,
                  cwd: str = "", user: str = "", timeout_ms: int = 0) -> PtyProcess:
        """A background process on a terminal of rows x cols."""
        p = self.start_process(argv, stdin=True, tty=True, rows=rows, cols=cols, env=env, cwd=cwd, user=user,
                               timeout_ms=timeout_ms)
        assert isinstance(p, PtyProcess)
        return p

    def _ref(self, process: Union[BackgroundProcess, str]) -> Any:
        pid = process.process_id if isinstance(process, BackgroundProcess) else process
        return self._pb.ProcessRef(sandbox_id=self.id, process_id=pid)

    def write_stdin(self, process: Union[BackgroundProcess, str], data: Union[bytes, str],
                    close: bool = False) -> ProcessStatus:
        req = self._pb.WriteProcessStdinRequest(process=self._ref(process), data=_bytes(data), close=close)
        return ProcessStatus._from(self._rpc(self._stub.WriteProcessStdin, req))

    def close_stdin(self, process: Union[BackgroundProcess, str]) -> ProcessStatus:
        return self.write_stdin(process, b"", close=True)

    def read_output(self, process: Union[BackgroundProcess, str], wait_ms: int = 0,
                    max_bytes: int = 0) -> ProcessOutput:
        """Takes the buffered output (per stream up to max_bytes, default 64 KiB),
        waiting up to wait_ms for some or for the end."""
        req = self._pb.ReadProcessOutputRequest(process=self._ref(process), max_bytes=max_bytes, wait_ms=wait_ms)
        r = self._rpc(self._stub.ReadProcessOutput, req)
        return ProcessOutput(r.stdout, r.stderr, r.eof, ProcessStatus._from(r.process))

    def signal(self, process: Union[BackgroundProcess, str], signo: int) -> ProcessStatus:
        req = self._pb.SignalProcessRequest(process=self._ref(process), signo=signo)
        return ProcessStatus._from(self._rpc(self._stub.SignalProcess, req))

    def kill(self, process: Union[BackgroundProcess, str], signo: int = int(_signal.SIGKILL)) -> ProcessStatus:
        return self.signal(process, signo)

    def process_status(self, process: Union[BackgroundProcess, str]) -> ProcessStatus:
        return ProcessStatus._from(self._rpc(self._stub.GetProcess, self._ref(process)))

    def list_processes(self) -> list[ProcessStatus]:
        r = self._rpc(self._stub.ListProcesses, self._pb.SandboxRef(id=self.id))
        return [ProcessStatus._from(p) for p in r.processes]

    # --- files ---

    def _file(self, path: str, user: str = "") -> Any:
        return self._pb.FileRequest(sandbox_id=self.id, path=path, user=user)

    def read(self, path: str, offset: int = 0, length: int = 0, *, user: str = "") -> bytes:
        """The file's bytes from offset (length 0: to the end)."""
        req = self._pb.ReadFileRequest(file=self._file(path, user), offset=offset, length=length)
        return self._chunks(self._stub.ReadFile(req))

    def write(self, path: str, data: Union[bytes, str], mode: int = 0, write_mode: str = "atomic",
              make_parents: bool = False, *, user: str = "") -> FileInfo:
        """Writes a file (write_mode: atomic, truncate, append or create — create
        fails with AlreadyExists on an existing file); mode 0: 0644 or the old file's."""
        if write_mode not in _WRITE_MODES:
            raise ValueError(f"write_mode: one of {', '.join(_WRITE_MODES)} (got {write_mode!r})")
        pb = self._pb
        header = pb.WriteFileHeader(file=self._file(path, user), write_mode=_WRITE_MODES[write_mode], mode=mode,
                                    make_parents=make_parents)
        payload = memoryview(_bytes(data))

        def requests() -> Iterator[Any]:
            yield pb.WriteFileRequest(header=header)
            for off in range(0, len(payload), CHUNK_SIZE):
                yield pb.WriteFileRequest(data=bytes(payload[off:off + CHUNK_SIZE]))

        return FileInfo._from(pb, self._rpc(self._stub.WriteFile, requests()))

    def ls(self, path: str = "", *, user: str = "") -> list[FileInfo]:
        r = self._rpc(self._stub.ListDir, self._file(path or self.workspace, user))
        return [FileInfo._from(self._pb, e) for e in r.entries]

    def stat(self, path: str, follow_symlinks: bool = False, *, user: str = "") -> FileInfo:
        req = self._pb.StatRequest(file=self._file(path, user), follow_symlinks=follow_symlinks)
        return FileInfo._from(self._pb, self._rpc(self._stub.Stat, req))

    def exists(self, path: str) -> bool:
        try:
            self.stat(path)
        except NotFound:
            return False
        return True

    def rm(self, path: str, recursive: bool = False, *, user: str = "") -> None:
        self._rpc(self._stub.Remove, self._pb.RemoveRequest(file=self._file(path, user), recursive=recursive))

    def mkdir(self, path: str, parents: bool = False, mode: int = 0, *, user: str = "") -> FileInfo:
        req = self._pb.MkdirRequest(file=self._file(path, user), parents=parents, mode=mode)
        return FileInfo._from(self._pb, self._rpc(self._stub.Mkdir, req))

    def rename(self, src: str, dst: str, no_replace: bool = False, *, user: str = "") -> None:
        self._rpc(self._stub.Rename, self._pb.RenameRequest(file=self._file(src, user), to=dst, no_replace=no_replace))

    # --- workspace transfer ---

    def download(self, path: str, *, user: str = "") -> bytes:
        """A directory as a tar stream."""
        return self._chunks(self._stub.Download(self._file(path, user)))

    def upload(self, path: str, tar: Union[bytes, Iterable[bytes]], *, user: str = "") -> None:
        """Extracts a tar stream into a directory (created if missing)."""
        pb = self._pb
        directory = self._file(path, user)

        def chunks() -> Iterator[bytes]:
            if isinstance(tar, (bytes, bytearray, memoryview)):
                view = memoryview(tar)
                for off in range(0, len(view), CHUNK_SIZE):
                    yield bytes(view[off:off + CHUNK_SIZE])
            else:
                yield from tar

        def requests() -> Iterator[Any]:
            yield pb.UploadRequest(directory=directory)
            for c in chunks():
                yield pb.UploadRequest(tar=c)

        self._rpc(self._stub.Upload, requests())

    # --- agent tools ---

    def apply_patch(self, patch: Optional[str] = None, *, operations: Optional[Sequence[Mapping[str, str]]] = None,
                    user: str = "") -> PatchResult:
        """OpenAI's apply_patch, inside the sandbox: V4A text ("*** Begin Patch" ...) or the
        structured operations ({type: create_file|update_file|delete_file, path, diff, move_to}).
        All of it applies or nothing does; a mismatch raises InvalidArgument naming the
        file and the context line."""
        req = self._pb.ApplyPatchRequest(sandbox_id=self.id, patch=patch or "", user=user)
        for o in operations or ():
            req.operations.add(type=o.get("type", ""), path=o.get("path", ""), diff=o.get("diff", ""),
                               move_to=o.get("move_to", ""))
        r = self._rpc(self._stub.ApplyPatch, req)
        return PatchResult([(f.path, f.change, f.moved_from) for f in r.files], r.summary)

    def instructions(self, cwd: str = "", *, user: str = "") -> list[tuple[str, str]]:
        """The AGENTS.md files from the workspace root down to cwd, as (path, text): root first,
        the nearest last (nearer ones refine farther ones)."""
        r = self._rpc(self._stub.GetInstructions, self._pb.InstructionsRequest(sandbox_id=self.id, cwd=cwd, user=user))
        return [(f.path, f.content.decode("utf-8", errors="replace")) for f in r.files]

    def read_lines(self, path: str, start_line: int = 1, max_lines: int = 0, *, user: str = "") -> dict[str, Any]:
        """Lines start_line.. of a text file (1-based; max_lines 0: to the end):
        {content, first_line, last_line, total_lines, more}."""
        r = self._rpc(self._stub.ReadLines, self._pb.ReadLinesRequest(file=self._file(path, user), start_line=start_line,
                                                                       max_lines=max_lines))
        return {"content": r.content, "first_line": r.first_line, "last_line": r.last_line,
                "total_lines": r.total_lines, "more": r.more}

    def search(self, pattern: str = "", path: str = "", *, globs: Sequence[str] = (), ignore_case: bool = False,
               fixed_strings: bool = False, files_with_matches: bool = False, hidden: bool = False,
               no_ignore: bool = False, max_results: int = 0, max_line_bytes: int = 0, timeout_ms: int = 0,
               user: str = "") -> dict[str, Any]:
        """Lines matching a regex (PCRE2) under path (default the workspace), as
        ripgrep finds them; an empty pattern lists the files the globs select.
        {matches: [(path, line, text)], truncated, timed_out, files_searched}."""
        r = self._rpc(self._stub.Search, self._pb.SearchRequest(
            sandbox_id=self.id, path=path, pattern=pattern, globs=list(globs), ignore_case=ignore_case,
            fixed_strings=fixed_strings, files_with_matches=files_with_matches, hidden=hidden, no_ignore=no_ignore,
            max_results=max_results, max_line_bytes=max_line_bytes, timeout_ms=timeout_ms, user=user))
        return {"matches": [(m.path, m.line, m.text) for m in r.matches], "truncated": r.truncated,
                "timed_out": r.timed_out, "files_searched": r.files_searched}

    def view_image(self, path: str, *, user: str = "") -> tuple[bytes, str]:
        """An image's bytes and MIME type (FailedPrecondition if it isn't one)."""
        r = self._rpc(self._stub.ViewImage, self._file(path, user))
        return r.data, r.mime_type

    def stage_skills(self, names: Sequence[str], directory: str = "", *, user: str = "") -> list[str]:
        """Copies skills into the sandbox (default <workspace>/.skills/<name>); their folders."""
        r = self._rpc(self._stub.StageSkills, self._pb.StageSkillsRequest(sandbox_id=self.id, names=list(names),
                                                                           directory=directory, user=user))
        return list(r.paths)

    def persist_workspace(self) -> bytes:
        """The workspace as a tar archive (Download)."""
        return self.download(self.workspace)

    def hydrate_workspace(self, tar: Union[bytes, Iterable[bytes]]) -> None:
        """Extracts a tar archive (from persist_workspace) into the workspace (Upload)."""
        self.upload(self.workspace, tar)


__all__ = [
    "AirlockClient", "Session", "ExecStream", "EventStream", "load_stubs", "DEFAULT_SOCKET", "STUBS_ENV",
    "AirlockError", "InvalidArgument", "NotFound", "AlreadyExists", "PermissionDenied", "FailedPrecondition",
    "Unimplemented", "Unavailable", "Limits", "Manifest", "ManifestEntry", "User", "SandboxInfo", "ExitStatus",
    "ExecResult", "OutputChunk", "BackgroundProcess", "PtyProcess", "ProcessStatus", "ProcessOutput", "FileInfo",
    "Stats", "Event", "Version",
]
