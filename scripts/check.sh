#!/usr/bin/env bash
# The checks of `make test`, run inside scripts/testbed.sh (stand-ins up, env set).
set -euo pipefail
cd "$(dirname "$0")/.."

step() { printf '\n==> %s\n' "$*"; }

step "cargo fmt --check"
cargo fmt --all -- --check
step "cargo clippy --all-targets -D warnings"
cargo clippy --all-targets --features emulators --locked -- -D warnings
step "module layers: no import circle, arrows point down"
python3 scripts/check_layers.py
step "cargo fmt --check (fuzz targets)"
cargo fmt --manifest-path fuzz/Cargo.toml -- --check
step "supply chain: cargo deny (advisories, licences, bans, sources)"
scripts/supply_chain.sh
step "cfn-lint template.yaml; sam validate --lint"
cfn-lint template.yaml
SAM_CLI_TELEMETRY=0 sam validate --lint --template template.yaml --region us-east-1
step "template grants: what the code does and no more (scripts/check_template.py)"
"${SES_DKIM_TESTBED_VENV}/bin/python" scripts/check_template.py | tail -n 1
step "SES model self-test (the stand-in the emulator suites use, against knot)"
"${SES_DKIM_TESTBED_VENV}/bin/python" scripts/ses_model_selftest.py | tail -n 1
step "AWS front self-test (Route 53 and Secrets Manager quotas in front of moto)"
"${SES_DKIM_TESTBED_VENV}/bin/python" scripts/aws_front_selftest.py | tail -n 1
step "cargo test --features emulators (unit, in-memory engine, mocked SDK, emulated AWS, real DNS, dkimpy)"
SES_DKIM_INVARIANT_LOG=$(mktemp)
export SES_DKIM_INVARIANT_LOG
trap 'rm -f "${SES_DKIM_INVARIANT_LOG}"' EXIT
cargo test --locked --all-targets --features emulators
echo "invariant checks made (SES's selector has a published, matching TXT record; no previous record retired before SES verified the current one): $(wc -l < "${SES_DKIM_INVARIANT_LOG}")"
step "real crashes: the function process SIGKILLed after each external call, then retried (scripts/crash_harness.py)"
cargo build --locked --bin ses-dkim-rotator --bin dkim-rotator --features emulators
"${SES_DKIM_TESTBED_VENV}/bin/python" scripts/crash_harness.py target/debug/ses-dkim-rotator
step "no secret in any log: the function through a Runtime API at AWS_LAMBDA_LOG_LEVEL=TRACE, and the CLI (scripts/log_scan.py)"
"${SES_DKIM_TESTBED_VENV}/bin/python" scripts/log_scan.py target/debug/ses-dkim-rotator target/debug/dkim-rotator
step "fuzz smoke: each cargo-fuzz target for ${FUZZ_SMOKE_SECONDS:-15} s (make fuzz runs longer)"
scripts/fuzz.sh "${FUZZ_SMOKE_SECONDS:-15}"
