#!/usr/bin/env bash
# Import throughput: `airlock image import` of a docker-save archive against
# `tar -x` of the same layer, in one hyperfine invocation. The layer is a
# copy of a host tree (default /usr/lib/python3: many small files; set-id
# bits, which host trees have, are stripped as --strip-setid does).
# Usage: tools/bench/import.sh [TREE]   Env: AIRLOCK (default ./build/airlock), RUNS (10)
set -euo pipefail
AIRLOCK=${AIRLOCK:-./build/airlock}
TREE=${1:-/usr/lib/python3}
RUNS=${RUNS:-10}
[ "$(id -u)" = 0 ] || { echo "import.sh: needs root" >&2; exit 1; }
WORK=$(mktemp -d /var/tmp/airlock-import-bench.XXXXXX)
trap 'rm -rf "$WORK"; "$AIRLOCK" rmi import-bench >/dev/null 2>&1 || true' EXIT

tar -C / -cf "$WORK/layer.tar" "${TREE#/}"
python3 - "$WORK" <<'PY'
import hashlib, json, os, sys, tarfile
w = sys.argv[1]
layer = os.path.join(w, "layer.tar")
h = hashlib.sha256(open(layer, "rb").read()).hexdigest()
cfg = json.dumps({"architecture": "amd64", "os": "linux", "config": {},
                  "rootfs": {"type": "layers", "diff_ids": ["sha256:" + h]}}).encode()
cname = hashlib.sha256(cfg).hexdigest() + ".json"
open(os.path.join(w, cname), "wb").write(cfg)
json.dump([{"Config": cname, "RepoTags": ["import-bench:latest"], "Layers": ["layer.tar"]}],
          open(os.path.join(w, "manifest.json"), "w"))
with tarfile.open(os.path.join(w, "image.tar"), "w") as t:
    for n in ("manifest.json", cname, "layer.tar"):
        t.add(os.path.join(w, n), arcname=n)
PY
size=$(du -sh "$WORK/layer.tar" | cut -f1)
files=$(tar -tf "$WORK/layer.tar" | wc -l)
echo "layer: $TREE, $size, $files entries"
hyperfine -N --runs "$RUNS" --warmup 1 \
  --prepare "sh -c 'rm -rf $WORK/x; mkdir $WORK/x; sync'" -n "tar -x" "tar -C $WORK/x -xf $WORK/layer.tar" \
  --prepare "sh -c '$AIRLOCK rmi import-bench >/dev/null 2>&1; sync; true'" -n "airlock image import" "$AIRLOCK image import $WORK/image.tar --strip-setid --name import-bench" \
  --export-json "$WORK/result.json" >/dev/null
python3 - "$WORK/result.json" <<'PY'
import json, statistics, sys
r = {x["command"]: statistics.median(x["times"]) * 1000 for x in json.load(open(sys.argv[1]))["results"]}
t, a = r["tar -x"], r["airlock image import"]
print(f"tar -x                 {t:8.1f} ms")
print(f"airlock image import   {a:8.1f} ms   (x {a / t:.2f}; import also verifies every digest and syncs the layer)")
PY
