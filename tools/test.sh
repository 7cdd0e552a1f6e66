#!/bin/sh
# The README's second command, and what CI runs: set up, build, and run every
# test lane this machine can run (unit, root, security; the vm lane when it
# exists). A lane that can't run here says why and counts as skipped. The
# fast lanes run first; the guest lane (vm) last.
set -eu
cd "$(dirname "$0")/.."
tools/setup.sh --vm
cd build
# Root and security lanes need root; as another user ctest reports them skipped.
ctest --output-on-failure --timeout 900 "$@"
