#!/usr/bin/env bash
# Runs a command on Node 22 after an idempotent set-up (scripts/setup.sh: system packages, Node 22,
# npm ci when node_modules is missing or stale; fast when everything is in place). The npm scripts
# start, test and bench go through here, so a fresh clone needs nothing but `npm start` / `npm test`.
set -euo pipefail
cd "$(dirname "$0")/.."

bash scripts/setup.sh --quiet
PATH="$(bash scripts/node22.sh):$PATH"
export PATH
exec "$@"
