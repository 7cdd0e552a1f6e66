#!/usr/bin/env python3
"""Reads what tools/bench/run.sh collected and prints it as tables.

  report.py table HYPERFINE_JSON CONFIGS_TSV [BASELINE_NAME]
      medians (ms) and ratios against the baseline (bwrap), one row per
      command, then each configuration in words. CONFIGS_TSV lines are
      "name<TAB>configuration".
  report.py steps LOG_DIR
      per-step medians from lines "airlock-timing <step> <microseconds>" in
      LOG_DIR/*.err (one file per run), in the order steps first appear.
"""
import glob
import json
import os
import re
import statistics
import sys


def table(json_path, configs_path, baseline):
    with open(json_path) as f:
        results = json.load(f)["results"]
    configs = {}
    with open(configs_path) as f:
        for line in f:
            name, _, text = line.rstrip("\n").partition("\t")
            configs[name] = text
    medians = {r["command"]: r["median"] * 1e3 for r in results}
    base = medians.get(baseline)
    name_w = max(len(r["command"]) for r in results)
    print(f"{'command':<{name_w}}  {'median':>8}  {'mean ± σ':>15}  {'min':>7}  "
          f"{'max':>7}  {'runs':>5}  {'× ' + baseline:>9}")
    for r in results:
        name = r["command"]
        med = medians[name]
        ratio = f"{med / base:9.2f}" if base else f"{'n/a':>9}"
        bad = [c for c in r.get("exit_codes", []) if c != 0]
        note = f"  ({len(bad)} runs failed)" if bad else ""
        print(f"{name:<{name_w}}  {med:8.2f}  {r['mean'] * 1e3:7.2f} ± {r['stddev'] * 1e3:5.2f}  "
              f"{r['min'] * 1e3:7.2f}  {r['max'] * 1e3:7.2f}  {len(r['times']):5d}  {ratio}{note}")
    print("(times in ms; ratio = median / median of " + baseline + ")")
    print()
    print("configurations:")
    for r in results:
        print(f"  {r['command']}: {configs.get(r['command'], '?')}")


LINE = re.compile(r"^airlock-timing (\S+) (\d+)\s*$")


def steps(log_dir):
    order, samples, runs = [], {}, 0
    for path in sorted(glob.glob(os.path.join(log_dir, "*.err"))):
        runs += 1
        with open(path, errors="replace") as f:
            for line in f:
                m = LINE.match(line)
                if not m:
                    continue
                step, us = m.group(1), int(m.group(2))
                if step not in samples:
                    order.append(step)
                    samples[step] = []
                samples[step].append(us)
    if not order:
        print(f"no 'airlock-timing <step> <us>' lines in {runs} runs "
              "(does the CLI print them with AIRLOCK_TIMINGS=1?)")
        return 1
    step_w = max(len(s) for s in order)
    print(f"{'step':<{step_w}}  {'median µs':>10}  {'p90 µs':>8}  {'runs':>5}")
    total = 0.0
    for s in order:
        v = sorted(samples[s])
        med = statistics.median(v)
        total += med
        p90 = v[min(len(v) - 1, int(len(v) * 0.9))]
        print(f"{s:<{step_w}}  {med:10.0f}  {p90:8d}  {len(v):5d}")
    print(f"{'sum of medians':<{step_w}}  {total:10.0f}")
    print(f"({runs} runs)")
    return 0


def main():
    if len(sys.argv) >= 4 and sys.argv[1] == "table":
        table(sys.argv[2], sys.argv[3], sys.argv[4] if len(sys.argv) > 4 else "bwrap")
        return 0
    if len(sys.argv) == 3 and sys.argv[1] == "steps":
        return steps(sys.argv[2])
    print(__doc__, file=sys.stderr)
    return 2


if __name__ == "__main__":
    sys.exit(main())
