#!/usr/bin/python3
"""The agent tools' benchmarks (issue 7): apply_patch of a 50-file patch inside
a sandbox (each file 200 lines, one hunk each), time around the API call from
a persistent Python client; median of --runs. Needs root (it runs airlockd);
not run in CI; asserts nothing but that the patch landed.

    tools/bench/agent_tools.py [--build DIR] [--runs N]
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
    ap.add_argument("--runs", type=int, default=21)
    a = ap.parse_args()
    build = Path(a.build).resolve()
    sys.path.insert(0, str(REPO / "harness" / "clients" / "python"))
    os.environ["AIRLOCK_PYTHON_STUBS"] = str(build / "python")
    from airlock_client import AirlockClient

    sys.path.insert(0, str(Path(__file__).resolve().parent))
    from airlockd import private_airlockd

    with private_airlockd(build, "airlock-tools-bench-") as (sock, _):
        c = AirlockClient(sock)
        s = c.create()
        s.exec("mkdir -p /workspace/p && cd /workspace/p && for i in $(seq 50); do seq 0 199 | sed 's/^/line /' > f$i.txt; done")
        times = []
        for r in range(a.runs):
            old, new = ("line 100", "line 100 v0") if r == 0 else (f"line 100 v{r - 1}", f"line 100 v{r}")
            patch = "*** Begin Patch\n" + "".join(
                f"*** Update File: p/f{i}.txt\n@@\n line 99\n-{old}\n+{new}\n line 101\n" for i in range(1, 51)) + "*** End Patch\n"
            t = time.monotonic()
            s.apply_patch(patch)
            times.append((time.monotonic() - t) * 1000)
        landed = s.exec(f"grep -l 'line 100 v{a.runs - 1}$' /workspace/p/*.txt | wc -l").stdout.strip()
        assert landed == b"50", landed
        print(f"apply_patch, 50 files x 200 lines, one hunk each: median {statistics.median(times):.1f} ms, "
              f"min {min(times):.1f}, max {max(times):.1f} (n={len(times)})")
        s.delete()

if __name__ == "__main__":
    main()
