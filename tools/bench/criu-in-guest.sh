#!/bin/sh
# Guest script for the CRIU benchmark: `criu dump`/`criu restore` by hand
# against airlock's Sandbox::Checkpoint/Restore on the same sandbox, in one
# run. Run it with:  tests/vm/run-guest.sh tools/bench/criu-in-guest.sh
# (times are under QEMU/TCG: compare ratios, not milliseconds).
export PATH=/usr/sbin:/usr/bin:/sbin:/bin
exec /airlock/build/tests/vm_criu_bench "${RUNS:-5}"
