#!/usr/bin/env bash
# The whole test suite, as the README documents it: installs what it needs, then runs every
# test of the workspace. Tests that need root and network namespaces run when root (CI runs as
# root and sets CI=true, which turns any skip into a failure).
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/install-deps.sh
if cargo nextest --version >/dev/null 2>&1; then
  cargo nextest run --workspace --no-fail-fast --profile ci
else
  cargo test --workspace --no-fail-fast
fi
