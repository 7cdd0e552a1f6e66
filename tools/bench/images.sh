#!/usr/bin/env bash
# Images (issue 8), not run in CI:
#  1. creating a sandbox (`airlock run --image X true`) from a ~1 GB image
#     costs the same as from the built-in `host` image: layers are overlay
#     lower layers, never copied (hyperfine, side by side, medians);
#  2. `airlock image import` of that image's layers against `tar -x` of the
#     same layer tars (target: within 1.5x; import also hashes every byte,
#     checks the policy per member and syncs the layers).
# The image is made here from host files, no network: layer 1 the root
# skeleton and /usr/bin, /usr/sbin, /usr/lib64, /usr/libexec; layer 2
# /usr/share; layer 3 /usr/lib/x86_64-linux-gnu (trimmed by SIZE_MB).
# Usage: tools/bench/images.sh    Env: AIRLOCK (default ./build/airlock),
#   RUNS (20 for run, 3 for import), SIZE_MB (default 1024: the whole image)
set -euo pipefail
cd "$(dirname "$0")/../.."
. tools/bench/common.sh
AIRLOCK=${AIRLOCK:-./build/airlock}
AIRLOCK=$(readlink -f "$AIRLOCK")
RUNS=${RUNS:-20}
SIZE_MB=${SIZE_MB:-1024}
[ "$(id -u)" = 0 ] || { echo "images.sh: needs root" >&2; exit 1; }
command -v hyperfine >/dev/null || { echo "images.sh: hyperfine is not installed" >&2; exit 1; }
bench_hybrid_reexec "$0" "$@"
WORK=$(mktemp -d /var/tmp/airlock-images-bench.XXXXXX)
NAME=bench-1g
trap 'rm -rf "$WORK"; "$AIRLOCK" rmi $NAME >/dev/null 2>&1 || true; "$AIRLOCK" rmi $NAME-import >/dev/null 2>&1 || true' EXIT

# ---- the image: three layer tars from host files, up to SIZE_MB ----------
mkdir -p "$WORK/skel"/{proc,dev,tmp,etc,root,sys,run}
for l in bin sbin lib lib64; do ln -s usr/$l "$WORK/skel/$l"; done
cp /etc/passwd /etc/group "$WORK/skel/etc/"
tar -C "$WORK/skel" -cf "$WORK/l1.tar" .
tar -C / -rf "$WORK/l1.tar" usr/bin usr/sbin usr/lib64 usr/libexec 2>/dev/null || true
tar -C / -cf "$WORK/l2.tar" usr/share 2>/dev/null || true
have=$(( ($(stat -c %s "$WORK/l1.tar") + $(stat -c %s "$WORK/l2.tar")) >> 20 ))
left=$(( SIZE_MB - have )); [ $left -lt 64 ] && left=64
# The rest from the multiarch library directory, whole subtrees until full.
( cd / && du -sm usr/lib/x86_64-linux-gnu/* 2>/dev/null | sort -k2 | awk -v left=$left '{ if (sum + $1 <= left) { sum += $1; print $2 } }' ) > "$WORK/l3.list"
# The dynamic loader and libc first: `true` must run.
printf '%s\n' usr/lib/x86_64-linux-gnu/ld-linux-x86-64.so.2 usr/lib/x86_64-linux-gnu/libc.so.6 |
  cat - "$WORK/l3.list" > "$WORK/l3.all"
tar -C / -cf "$WORK/l3.tar" -T "$WORK/l3.all" 2>/dev/null || true
python3 - "$WORK" "$NAME" <<'PY'
import hashlib, json, os, sys, tarfile
w, name = sys.argv[1], sys.argv[2]
ids = []
for l in ("l1.tar", "l2.tar", "l3.tar"):
    h = hashlib.sha256()
    with open(os.path.join(w, l), "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    ids.append("sha256:" + h.hexdigest())
cfg = json.dumps({"architecture": "amd64", "os": "linux", "config": {"Env": ["PATH=/usr/bin:/bin"]},
                  "rootfs": {"type": "layers", "diff_ids": ids}}).encode()
cname = hashlib.sha256(cfg).hexdigest() + ".json"
open(os.path.join(w, cname), "wb").write(cfg)
json.dump([{"Config": cname, "RepoTags": [name + ":latest"], "Layers": ["l1.tar", "l2.tar", "l3.tar"]}],
          open(os.path.join(w, "manifest.json"), "w"))
with tarfile.open(os.path.join(w, "image.tar"), "w") as t:
    for n in ("manifest.json", cname, "l1.tar", "l2.tar", "l3.tar"):
        t.add(os.path.join(w, n), arcname=n)
PY
"$AIRLOCK" image import "$WORK/image.tar" --name $NAME --strip-setid >/dev/null
size=$(du -sm "$WORK/l1.tar" "$WORK/l2.tar" "$WORK/l3.tar" | awk '{ s += $1 } END { print s }')
files=$(cat "$WORK"/l?.tar | tar -t --ignore-zeros 2>/dev/null | wc -l)
echo "image $NAME: 3 layers, $size MB, $files entries"

# ---- 1. sandbox creation: host vs the 1 GB image --------------------------
precheck "run --image $NAME" "$AIRLOCK" run --image $NAME true
precheck "run (host)" "$AIRLOCK" run true
hyperfine -N --runs "$RUNS" --warmup 3 \
  -n "airlock run true (host)" "$AIRLOCK run true" \
  -n "airlock run --image $NAME true" "$AIRLOCK run --image $NAME true" \
  --export-json "$WORK/run.json" >/dev/null

# ---- 2. import throughput: import vs tar -x of the same layer tars --------
IRUNS=${IRUNS:-3}
hyperfine -N --runs "$IRUNS" --warmup 1 \
  --prepare "sh -c 'rm -rf $WORK/x; mkdir $WORK/x; sync'" \
  -n "tar -x (3 layers)" "sh -c 'for l in $WORK/l1.tar $WORK/l2.tar $WORK/l3.tar; do mkdir -p $WORK/x/\$(basename \$l); tar -C $WORK/x/\$(basename \$l) -xf \$l; done'" \
  --prepare "sh -c '$AIRLOCK rmi $NAME-import >/dev/null 2>&1; $AIRLOCK rmi $NAME >/dev/null 2>&1; sync; true'" \
  -n "airlock image import" "$AIRLOCK image import $WORK/image.tar --name $NAME-import --strip-setid" \
  --export-json "$WORK/import.json" >/dev/null

python3 - "$WORK/run.json" "$WORK/import.json" "$size" <<'PY'
import json, statistics, sys
def med(path):
    return {x["command"]: statistics.median(x["times"]) * 1000 for x in json.load(open(path))["results"]}
run, imp, size = med(sys.argv[1]), med(sys.argv[2]), float(sys.argv[3])
print("sandbox creation (median):")
for k, v in run.items():
    print(f"  {k:40s} {v:8.2f} ms")
h, i = list(run.values())
print(f"  image / host: x {i / h:.2f}")
print("import (median):")
t, a = list(imp.values())
print(f"  tar -x (3 layers)                        {t:8.0f} ms  ({size / t * 1000:.0f} MB/s)")
print(f"  airlock image import                     {a:8.0f} ms  ({size / a * 1000:.0f} MB/s)  x {a / t:.2f} of tar -x")
PY
