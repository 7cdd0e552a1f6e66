#!/bin/sh
# The README's first command: set up, build, and run a sandbox on the
# built-in host image.
set -eu
cd "$(dirname "$0")/.."
tools/setup.sh
exec build/airlock run -- sh -c 'id; hostname; ls /'
