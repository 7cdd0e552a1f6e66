"""A private airlockd for a benchmark: its own socket and state directory in a
fresh temporary directory; stopped and cleaned up afterwards (its pool, which
airlockd leaves mounted for the next daemon, unmounted)."""

from __future__ import annotations

import contextlib
import os
import shutil
import subprocess
import tempfile
import time
from pathlib import Path
from typing import Iterator, Optional


@contextlib.contextmanager
def private_airlockd(build: Path, prefix: str, parent: Optional[str] = None,
                     args: tuple[str, ...] = ()) -> Iterator[tuple[str, Path]]:
    """Yields (socket, state dir) once the daemon serves."""
    work = Path(tempfile.mkdtemp(prefix=prefix, dir=parent))
    sock = str(work / "airlockd.sock")
    state = work / "state"
    log = open(work / "airlockd.log", "wb")
    daemon = subprocess.Popen([str(build / "airlockd"), "--socket", sock, "--state-dir", str(state), *args],
                              stdout=log, stderr=log)
    try:
        for _ in range(600):
            if os.path.exists(sock):
                break
            if daemon.poll() is not None:
                break
            time.sleep(0.05)
        if not os.path.exists(sock):
            raise SystemExit("airlockd did not come up:\n" + (work / "airlockd.log").read_text(errors="replace")[-2000:])
        time.sleep(0.2)
        yield sock, state
    finally:
        if daemon.poll() is None:
            daemon.terminate()
            daemon.wait(timeout=60)
        log.close()
        subprocess.run(["umount", "-l", str(state / "pool")], stderr=subprocess.DEVNULL)
        shutil.rmtree(work, ignore_errors=True)
