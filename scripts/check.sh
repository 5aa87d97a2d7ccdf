#!/usr/bin/env bash
# The checks of `make test`, run inside scripts/testbed.sh (stand-ins up, env set).
set -euo pipefail
cd "$(dirname "$0")/.."

step() { printf '\n==> %s\n' "$*"; }

step "cargo fmt --check"
cargo fmt --all -- --check
step "cargo clippy --all-targets -D warnings"
cargo clippy --all-targets --locked -- -D warnings
step "cfn-lint template.yaml"
cfn-lint template.yaml
step "cargo test (unit, mocked SDK, emulated AWS, real DNS, dkimpy)"
SES_DKIM_INVARIANT_LOG=$(mktemp)
export SES_DKIM_INVARIANT_LOG
trap 'rm -f "${SES_DKIM_INVARIANT_LOG}"' EXIT
cargo test --locked --all-targets
echo "invariant checks made (SES's selector has a published, matching TXT record): $(wc -l < "${SES_DKIM_INVARIANT_LOG}")"
