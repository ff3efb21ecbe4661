#!/usr/bin/env bash
# Installs loopwarden's build and test dependencies from Debian bookworm's packages.
# Idempotent: packages already present are skipped, and apt-get update runs only when needed.
set -euo pipefail

packages=(
  build-essential cmake ninja-build pkg-config git
  libboost-dev libboost-filesystem-dev
  libprotobuf-dev protobuf-compiler
  libzmq3-dev cppzmq-dev
  libeigen3-dev libspdlog-dev libfmt-dev
  catch2 libyaml-cpp-dev libcli11-dev nlohmann-json3-dev
  libcpp-httplib-dev libsqlite3-dev libsodium-dev libre2-dev
  libtree-sitter-dev libpg-query-dev
  python3 python3-zmq python3-protobuf python3-numpy
  sqlite3 prometheus prometheus-alertmanager chromium
  clang-14 libclang-rt-14-dev llvm-14
  iproute2
)

missing=()
for p in "${packages[@]}"; do
  if ! dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed"; then
    missing+=("$p")
  fi
done
# npm fetches the pinned tree-sitter bash grammar at configure time (plugins/destructive_action).
# Any npm will do (Debian's, or one that came with another Node.js package): only ask for
# Debian's when there is none, so a Node.js that ships its own npm is not fought over.
if ! command -v npm >/dev/null 2>&1; then
  missing+=(npm)
fi

if [ "${#missing[@]}" -eq 0 ]; then
  echo "install-deps: all ${#packages[@]} packages (and npm) present"
  exit 0
fi

sudo=""
if [ "$(id -u)" -ne 0 ]; then
  sudo="sudo"
fi
echo "install-deps: installing ${missing[*]}"
export DEBIAN_FRONTEND=noninteractive
$sudo apt-get update -q
$sudo apt-get install -y -q --no-install-recommends "${missing[@]}"
