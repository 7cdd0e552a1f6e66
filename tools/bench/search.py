#!/usr/bin/python3
"""The search tool's benchmark (issue 7): regex search over a 100k-file tree
inside a sandbox, airlock's Search call against ripgrep (Debian's package,
`rg`, run inside the same sandbox on the same tree through Run), measured
interleaved in one run; medians. The tree is a synthetic source tree made in
the sandbox's writable layer: 1000 directories of 100 files of ~40 lines.
Both sides are timed around the API call from one persistent Python client,
so each carries one call's overhead; page cache warm for both. Needs root
(it runs airlockd); not run in CI; asserts only that both found the same.

    tools/bench/search.py [--build DIR] [--runs N] [--files N]
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]

MAKE_TREE = r"""
import os, random, sys
n = int(sys.argv[1])
random.seed(7)
words = ["alpha", "beta", "gamma", "delta", "return", "value", "self", "import", "def", "class", "for", "in"]
for d in range(n // 100):
    path = f"/workspace/tree/pkg{d // 50}/mod{d}"
    os.makedirs(path, exist_ok=True)
    for f in range(100):
        lines = [" ".join(random.choice(words) for _ in range(8)) for _ in range(40)]
        if (d * 100 + f) % 997 == 0:
            lines[random.randrange(40)] = f"    raise ValueError('needle_{d}_{f}')"
        with open(f"{path}/file{f}.py", "w") as fh:
            fh.write("\n".join(lines) + "\n")
"""

CASES = [
    # (name, Search kwargs, rg arguments)
    ("regex needle_[0-9]+_[0-9]+", {"pattern": r"needle_[0-9]+_[0-9]+"}, ["-n", r"needle_[0-9]+_[0-9]+"]),
    ("literal, ignore case", {"pattern": "VALUEERROR", "ignore_case": True, "fixed_strings": True},
     ["-n", "-i", "-F", "VALUEERROR"]),
    ("regex with a glob", {"pattern": r"raise \w+Error", "globs": ["pkg1/**"]}, ["-n", "-g", "pkg1/**", r"raise \w+Error"]),
    ("file list (no pattern)", {"globs": ["*.py"]}, ["--files", "-g", "*.py"]),
]


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--build", default=str(REPO / "build"))
    ap.add_argument("--runs", type=int, default=11)
    ap.add_argument("--files", type=int, default=100_000)
    a = ap.parse_args()
    if shutil.which("rg") is None:
        sys.exit("search bench: needs ripgrep (tools/setup.sh --bench installs it)")
    build = Path(a.build).resolve()
    sys.path.insert(0, str(REPO / "harness" / "clients" / "python"))
    os.environ["AIRLOCK_PYTHON_STUBS"] = str(build / "python")
    from airlock_client import AirlockClient

    sys.path.insert(0, str(Path(__file__).resolve().parent))
    from airlockd import private_airlockd

    with private_airlockd(build, "airlock-search-bench-") as (sock, _):
        c = AirlockClient(sock)
        s = c.create()
        made = s.exec(["python3", "-c", MAKE_TREE, str(a.files)], timeout_ms=600_000)
        assert made.exit_code == 0, made.stderr
        print(f"tree: {a.files} files under /workspace/tree; rg {os.popen('rg --version').readline().split()[1]}; "
              f"{os.cpu_count()} CPUs; runs {a.runs}, interleaved; medians in ms")
        print(f"| search | airlock Search | rg in the sandbox (Run) | ratio |")
        print(f"|---|---|---|---|")
        for name, kwargs, rg_args in CASES:
            ours, theirs = [], []
            for r in range(a.runs + 1):  # the first pair warms the cache, uncounted
                t = time.monotonic()
                found = s.search(path="tree", max_results=100_000, **kwargs)
                t_ours = (time.monotonic() - t) * 1000
                t = time.monotonic()
                rg = s.exec(["rg", "--no-config", *rg_args], cwd="/workspace/tree", max_output_bytes=64 << 20)
                t_rg = (time.monotonic() - t) * 1000
                assert rg.exit_code == 0, rg.stderr
                if r == 0:
                    ours_n = len(found["matches"])
                    rg_n = len(rg.stdout.splitlines())
                    assert ours_n == rg_n, (name, ours_n, rg_n)
                    continue
                ours.append(t_ours)
                theirs.append(t_rg)
            mo, mr = statistics.median(ours), statistics.median(theirs)
            print(f"| {name} ({ours_n} results) | {mo:.1f} | {mr:.1f} | {mo / mr:.2f} |")
        s.delete()


if __name__ == "__main__":
    main()
