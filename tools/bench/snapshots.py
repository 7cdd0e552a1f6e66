#!/usr/bin/python3
"""Filesystem snapshot benchmarks (issue 6): snapshot latency against bytes
changed in a workspace of fixed size, with the flush (the sandbox running)
apart from the time the sandbox is frozen; a snapshot after a step that
changed nothing; Restore and Fork to first exec; forking 20 sandboxes from
one snapshot. Needs root (it runs airlockd); not run in CI; asserts nothing.

    tools/bench/snapshots.py [--build DIR] [--workspace-mib N] [--runs N]

Client-side times are wall-clock around one API call from this process (a
persistent gRPC connection, the Python client); flush and frozen times are
what the daemon measured inside Snapshot.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--build", default=str(REPO / "build"))
    ap.add_argument("--workspace-mib", type=int, default=1024)
    ap.add_argument("--runs", type=int, default=5)
    a = ap.parse_args()
    build = Path(a.build).resolve()
    sys.path.insert(0, str(REPO / "harness" / "clients" / "python"))
    os.environ["AIRLOCK_PYTHON_STUBS"] = str(build / "python")
    from airlock_client import AirlockClient

    sys.path.insert(0, str(Path(__file__).resolve().parent))
    from airlockd import private_airlockd

    made = []
    with private_airlockd(build, "airlock-snapshot-bench-") as (sock, _):
        try:
            c = AirlockClient(sock)
            s = c.create(snapshots=True)
            made.append(s)
            # The fixed-size workspace: N MiB of incompressible data, flushed.
            assert s.exec(f"head -c {a.workspace_mib}M /dev/urandom > /workspace/base && sync", timeout_ms=600000).ok
            print(f"=== filesystem snapshot benchmarks, {time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())} ===")
            print(f"host: {os.uname().release}, {os.cpu_count()} CPUs; pool: a loop-backed btrfs image; "
                  f"workspace {a.workspace_mib} MiB; {a.runs} runs per row; medians")
            print("\n| bytes changed since the last snapshot | snapshot (API call) ms | flush ms | frozen ms |")
            print("|---|---|---|---|")
            snaps = []
            for label, mib in (("nothing", 0), ("1 MB", 1), ("100 MB", 100), ("1 GB", 1024)):
                total, flush, frozen = [], [], []
                for i in range(a.runs):
                    if mib:
                        # Written, not flushed: the snapshot's flush pays for it.
                        assert s.exec(f"head -c {mib}M /dev/urandom > /workspace/step", timeout_ms=600000).ok
                    else:
                        s.snapshot(keep_last=2)  # so that the one timed below finds nothing new
                    t = time.perf_counter()
                    info = s.snapshot(keep_last=2)
                    total.append((time.perf_counter() - t) * 1000)
                    flush.append(info.flush_us / 1000)
                    frozen.append(info.frozen_us / 1000)
                    assert info.reused == (mib == 0), info
                    snaps.append(info.id)
                print(f"| {label} | {statistics.median(total):.2f} | {statistics.median(flush):.2f} | "
                      f"{statistics.median(frozen):.2f} |")

            snap = s.snapshot(keep_last=2).id
            restore = []
            for i in range(a.runs * 2):
                t = time.perf_counter()
                r = c.restore(snap)
                r.exec(["true"])
                restore.append((time.perf_counter() - t) * 1000)
                r.delete()
            t = time.perf_counter()
            forks = c.fork(snap, 20)
            fork_all = (time.perf_counter() - t) * 1000
            t = time.perf_counter()
            for f in forks:
                assert f.exec(["true"]).ok
            first_execs = (time.perf_counter() - t) * 1000
            for f in forks:
                f.delete()
            print("\n| | ms |\n|---|---|")
            print(f"| Restore + first exec (median of {len(restore)}) | {statistics.median(restore):.2f} |")
            print(f"| Fork 20 sandboxes from one snapshot (one call) | {fork_all:.1f} ({fork_all / 20:.2f} each) |")
            print(f"| then the first exec in each of the 20 | {first_execs:.1f} ({first_execs / 20:.2f} each) |")
            print(f"\ncommand: tools/bench/snapshots.py --workspace-mib {a.workspace_mib} --runs {a.runs}")
            for x in c.list_snapshots():
                c.delete_snapshot(x.id)
        finally:
            for m in made:
                try:
                    m.delete()
                except Exception:
                    pass


if __name__ == "__main__":
    main()
