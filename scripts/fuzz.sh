#!/usr/bin/env bash
# Runs the cargo-fuzz targets in fuzz/ for a bounded time each.
#   scripts/fuzz.sh SECONDS [TARGET...]     (default: every target)
# `make fuzz` runs each for FUZZ_SECONDS (default 120); `make test` runs a short smoke.
# Seeds: the bad-input corpus (tests/corpus), the sample events (events/), DNS replies
# (fuzz/seeds) and a secret with a fresh throwaway key; the grown corpus stays in
# target/fuzz/corpus between runs. A crash leaves its input in fuzz/artifacts/<target>/
# and fails the script; replay it with `scripts/fuzz.sh 0 <target> fuzz/artifacts/<target>/<file>`.
set -euo pipefail
cd "$(dirname "$0")/.."

CARGO_FUZZ_VERSION=0.13.2
SECONDS_EACH="${1:?usage: scripts/fuzz.sh SECONDS [TARGET...]}"
shift
ALL_TARGETS=(event_parse secret_parse dns_txt)
REPLAY=""
if [ "$#" -eq 2 ] && [ -f "$2" ]; then REPLAY="$2"; set -- "$1"; fi
TARGETS=("${@:-${ALL_TARGETS[@]}}")

if ! cargo install --list | grep -q "^cargo-fuzz v${CARGO_FUZZ_VERSION}:"; then
  echo "==> installing cargo-fuzz ${CARGO_FUZZ_VERSION}" >&2
  cargo install cargo-fuzz --version "${CARGO_FUZZ_VERSION}" --locked
fi

# cargo fuzz passes -Z flags (sanitizer, coverage); the machine has one stable toolchain,
# whose compiler accepts them when told it is bootstrapping.
export RUSTC_BOOTSTRAP=1
FUZZ=(cargo fuzz run --fuzz-dir fuzz --target-dir target/fuzz --sanitizer address)

if [ -n "$REPLAY" ]; then
  exec "${FUZZ[@]}" "${TARGETS[0]}" "$REPLAY"
fi

SEEDS=target/fuzz/seeds
rm -rf "$SEEDS" && mkdir -p "$SEEDS"/{event_parse,secret_parse,dns_txt}
cp events/*.json events/malformed/* "$SEEDS/event_parse/" 2>/dev/null || true
cp fuzz/seeds/dns_txt/* "$SEEDS/dns_txt/"
python3 - "$SEEDS" <<'PY'
import base64, glob, json, os, subprocess, sys
seeds = sys.argv[1]
for path in glob.glob("tests/corpus/events/*.json"):
    case = json.load(open(path))
    open(f"{seeds}/event_parse/{os.path.basename(path)}", "w").write(json.dumps(case["input"]))
for path in glob.glob("tests/corpus/secrets/*.json"):
    case = json.load(open(path))
    open(f"{seeds}/secret_parse/{os.path.basename(path)}", "w").write(case["secret_string"])
for path in glob.glob("tests/corpus/dns/*.json"):
    for i, record in enumerate(json.load(open(path))["records"]):
        open(f"{seeds}/dns_txt/{os.path.basename(path)}.{i}", "w").write(record)
# A well-formed secret with a real key, made now (no key material in the repository).
pem = subprocess.run(["openssl", "genrsa", "1024"], capture_output=True, check=True).stdout
der = subprocess.run(["openssl", "rsa", "-traditional", "-outform", "DER"], input=pem,
                     capture_output=True, check=True).stdout
doc = {"identity": "example.com", "selector": "ses-20261126-abcd",
       "private_key": base64.b64encode(der).decode(), "created_at": "2026-11-26T00:00:00Z",
       "previous_selector": "ses-20261001-0f0f", "note": "kept"}
open(f"{seeds}/secret_parse/well-formed.json", "w").write(json.dumps(doc))
PY

for target in "${TARGETS[@]}"; do
  corpus="target/fuzz/corpus/${target}"
  mkdir -p "$corpus"
  echo "==> fuzzing ${target} for ${SECONDS_EACH} s" >&2
  log="target/fuzz/${target}.log"
  if ! "${FUZZ[@]}" "$target" "$corpus" "$SEEDS/$target" -- \
    -max_total_time="${SECONDS_EACH}" -max_len=65536 -rss_limit_mb=2048 -timeout=10 \
    -print_final_stats=1 >"$log" 2>&1; then
    tail -n 60 "$log" >&2
    echo "fuzz target ${target} failed; the input is in fuzz/artifacts/${target}/ (full log: ${log})" >&2
    exit 1
  fi
  grep -E "^(stat::number_of_executed_units|stat::peak_rss_mb|stat::new_units_added)" "$log" | tr '\n' ' ' >&2
  echo >&2
done
