#!/bin/sh
# Installs what airlock needs to build and run on Debian bookworm, then
# builds it into ./build. Idempotent: packages already present are skipped.
# Usage: tools/setup.sh [--bench] [--vm]
#   --bench  adds the peers for tools/bench/ (bubblewrap, crun, runc, hyperfine, ripgrep)
#   --vm     adds what the test lanes need beyond the build: QEMU, and CRIU
#            with iptables, for the guest lane (its /usr is a copy of the
#            host's); podman, whose round trips load and run airlock's exports
set -eu
cd "$(dirname "$0")/.."

packages="build-essential cmake pkg-config libseccomp-dev libcap-dev libmnl-dev libnftnl-dev libssl-dev openssl
  nlohmann-json3-dev catch2 btrfs-progs python3
  libgrpc++-dev libprotobuf-dev protobuf-compiler protobuf-compiler-grpc libsqlite3-dev
  libyaml-cpp-dev libpcre2-dev python3-grpcio python3-protobuf python3-pytest nodejs
  mmdebstrap"
for arg in "$@"; do
  case "$arg" in
    --bench) packages="$packages hyperfine bubblewrap runc crun util-linux ripgrep" ;;
    --vm) packages="$packages qemu-system-x86 qemu-utils criu iptables podman" ;;
    *) echo "setup: unknown option $arg" >&2; exit 2 ;;
  esac
done

missing=""
for p in $packages; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing="$missing $p"
done
if [ -n "$missing" ]; then
  echo "setup: installing$missing"
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq
  # shellcheck disable=SC2086
  apt-get install -y -qq --no-install-recommends $missing >/dev/null
fi

cmake -S . -B build -DCMAKE_BUILD_TYPE=RelWithDebInfo >/dev/null
cmake --build build -j"$(nproc)"
echo "setup: built build/airlock, build/airlock-init and build/airlockd"

# The JavaScript parts, from the npm registry: the MCP SDK client the MCP
# tests drive `airlock mcp` with, and the TypeScript client (its package, the
# Agents SDK it implements, and its build). Installed again only when a
# package-lock.json changed.
if ! command -v npm >/dev/null 2>&1; then
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends npm >/dev/null
fi
for dir in tests/mcp harness/clients/typescript; do
  if [ ! -f "$dir/node_modules/.package-lock.json" ] || [ "$dir/package-lock.json" -nt "$dir/node_modules/.package-lock.json" ]; then
    (cd "$dir" && npm ci --no-audit --no-fund --loglevel=error)
  fi
done
(cd harness/clients/typescript && npm run --silent build)
echo "setup: installed the MCP tests' and the TypeScript client's npm packages"
