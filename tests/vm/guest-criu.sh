#!/bin/sh
# Guest script: CRIU on real airlock sandboxes (tests/vm/criu_test.cc).
B=/airlock/build
export PATH=/usr/sbin:/usr/bin:/sbin:/bin
if ! command -v criu >/dev/null; then echo "SKIP: criu is not installed (tools/setup.sh --vm)"; exit 77; fi
criu --version | head -1
if ! criu check >/tmp/criu-check.log 2>&1; then
  echo "SKIP: criu check fails here:"; tail -3 /tmp/criu-check.log; exit 77
fi
exec "$B/tests/vm_tests" -s -r compact "$@"
