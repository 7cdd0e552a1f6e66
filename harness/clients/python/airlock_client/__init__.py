"""airlock_client: a typed Python client for airlockd (airlock.v1 over a unix socket).

    from airlock_client import AirlockClient
    client = AirlockClient("/run/airlock/airlockd.sock")
    session = client.create(labels={"job": "demo"})
    print(session.exec(["id", "-u"]).stdout)
    session.delete()

The generated stubs are found through $AIRLOCK_PYTHON_STUBS, a stubs_path
argument, or a copy in airlock_client/_stubs (see README.md).
"""

from .client import (
    DEFAULT_SOCKET,
    STUBS_ENV,
    AirlockClient,
    AirlockError,
    AlreadyExists,
    BackgroundProcess,
    Event,
    EventStream,
    ExecResult,
    ExecStream,
    ExitStatus,
    PatchResult,
    FailedPrecondition,
    FileInfo,
    InvalidArgument,
    Limits,
    Manifest,
    ManifestEntry,
    NotFound,
    OutputChunk,
    PermissionDenied,
    ProcessOutput,
    ProcessStatus,
    PtyProcess,
    SandboxInfo,
    Session,
    SnapshotInfo,
    Stats,
    Unavailable,
    Unimplemented,
    User,
    Version,
    load_stubs,
)

__all__ = [
    "AirlockClient", "Session", "ExecStream", "EventStream", "load_stubs", "DEFAULT_SOCKET", "STUBS_ENV",
    "AirlockError", "InvalidArgument", "NotFound", "AlreadyExists", "PermissionDenied", "FailedPrecondition",
    "Unimplemented", "Unavailable", "Limits", "Manifest", "ManifestEntry", "User", "SandboxInfo", "ExitStatus",
    "ExecResult", "OutputChunk", "BackgroundProcess", "PtyProcess", "ProcessStatus", "ProcessOutput", "FileInfo",
    "Stats", "Event", "Version", "SnapshotInfo", "PatchResult",
]
