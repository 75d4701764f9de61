#!/usr/bin/env bash
# `npm test`: type-check, then node's test runner over every test folder, on Node 22 (run through
# scripts/with-node22.sh, which sets up what is missing first).
set -euo pipefail
cd "$(dirname "$0")/.."

node -e 'if (process.versions.node.split(".")[0] !== "22") { console.error(`npm test must run on Node 22 (the Lambda runtime), not ${process.version}`); process.exit(1); }'
tsc
node --import tsx --test --test-force-exit --test-reporter=spec \
  test/unit/*.test.ts test/fuzz/*.fuzz.test.ts test/integration/*.test.ts test/artifact/*.test.ts
