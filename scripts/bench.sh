#!/usr/bin/env bash
# `make bench`: performance figures from one run, with the machine described. Runs inside
# scripts/testbed.sh (stand-ins up).
set -euo pipefail
cd "$(dirname "$0")/.."
say() { printf '\n== %s\n' "$*"; }

say "machine"
echo "$(nproc) cores, $(free -g | awk '/Mem:/ {print $2}') GiB, $(uname -m), $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | xargs)"

say "release build (bootstrap + baselines)"
cargo build --release --locked --bin ses-dkim-rotator --bin dkim-rotator --example keygen_timing --example hello_lambda 2>&1 | tail -1

say "key generation: ours (rsa crate) vs openssl genrsa, same machine"
target/release/examples/keygen_timing 101
python - <<'PY'
import statistics, subprocess, time
for bits in (1024, 2048):
    t = []
    for _ in range(31):
        s = time.perf_counter()
        subprocess.run(["openssl", "genrsa", str(bits)], capture_output=True, check=True)
        t.append((time.perf_counter() - s) * 1000)
    t.sort()
    print(f"openssl genrsa {bits}: median {statistics.median(t):.1f} ms, p95 {t[round(0.95*(len(t)-1))]:.1f} ms (31 keys, includes process start)")
PY

say "deployable size (x86_64 release; arm64 needs the aarch64 rust-std, which cannot be fetched here)"
python - <<'PY'
import os, zipfile
b = "target/release/ses-dkim-rotator"
with zipfile.ZipFile("/tmp/ses-dkim-bootstrap.zip", "w", zipfile.ZIP_DEFLATED, compresslevel=9) as z:
    z.write(b, "bootstrap")
print(f"binary {os.path.getsize(b)/1e6:.2f} MB, zip {os.path.getsize('/tmp/ses-dkim-bootstrap.zip')/1e6:.2f} MB")
PY

say "cold start: spawn -> first Runtime API poll (21 runs each)"
export DKIM_ALLOWED_IDENTITIES='*' DKIM_DNS_PUBLISHER=rfc2136 DKIM_DNS_UPDATE_SERVER="${DKIM_TEST_DNS_SERVER}" \
  DKIM_DNS_ZONE="${DKIM_TEST_DNS_ZONE}" DKIM_DNS_TSIG_SECRET_ID=dns/tsig DKIM_DNS_SERVERS="${DKIM_TEST_DNS_SERVER}"
ROT=$(python scripts/bench_runtime.py target/release/ses-dkim-rotator --runs 21)
HELLO=$(python scripts/bench_runtime.py target/release/examples/hello_lambda --runs 21)
python - "$ROT" "$HELLO" <<'PY'
import json, sys
rot, hello = json.loads(sys.argv[1]), json.loads(sys.argv[2])
print(f"rotator median {rot['cold_start_median_ms']:.1f} ms (p95 {rot['cold_start_p95_ms']:.1f}); "
      f"hello-world median {hello['cold_start_median_ms']:.1f} ms (p95 {hello['cold_start_p95_ms']:.1f}); "
      f"ratio {rot['cold_start_median_ms']/hello['cold_start_median_ms']:.2f}x")
PY

say "one full rotation through the Runtime API: peak RSS"
python scripts/demo_aws.py seed bench.${DKIM_TEST_DNS_ZONE} > /tmp/ses-dkim-bench-seed.json
python - <<'PY' > /tmp/ses-dkim-bench-events.json
import json
seed = json.load(open("/tmp/ses-dkim-bench-seed.json"))
print(json.dumps([{"Step": s, "SecretId": seed["arn"], "ClientRequestToken": seed["token"]}
                  for s in ("createSecret", "setSecret", "testSecret", "finishSecret")]))
PY
python scripts/bench_runtime.py target/release/ses-dkim-rotator --events /tmp/ses-dkim-bench-events.json

say "AWS and DNS calls (pinned in tests/crash_points.rs)"
python - <<'PY'
import re
from collections import Counter
text = open("tests/crash_points.rs").read()

def table(const):
    """(label, calls) pairs of a pinned `[(&str, &[&str]); N]` table."""
    body = text.split(f"const {const}")[1].split("\n];")[0]
    return re.findall(r'\(\s*"([^"]+)",\s*&\[(.*?)\],?\s*\)', body, re.S)

def show(title, rows):
    rows = [(label, re.findall(r'"(\w+)"', calls)) for label, calls in rows]
    every = [c for _, calls in rows for c in calls]
    dns = sum(1 for c in every if c.startswith("Dns"))
    print(f"{title}: {len(every) - dns} AWS calls + {dns} DNS messages")
    for label, calls in rows:
        c = Counter(calls)
        print(f"  {label:<16} {len(calls):>2}: " + ", ".join(f"{k}×{v}" if v > 1 else k for k, v in c.items()))

steps = table("STEP_CALLS")
show("one rotation (Secrets Manager's four steps, RFC 2136)", steps)
runs = table("SCHEDULED_RUN_CALLS")
first_label, first_calls = runs[0]
steps_text = ", ".join(calls for _, calls in steps)
show("one scheduled lifecycle (the four steps inside run 1)",
     [(first_label, first_calls + ", " + steps_text)] + runs[1:])
PY

say "fleet scaling (50 ms added to every AWS call: SESv2 by awsim chaos, Secrets Manager by a delaying port)"
FLEET_BENCH_N=${FLEET_BENCH_N:-100} FLEET_BENCH_CONCURRENCY=${FLEET_BENCH_CONCURRENCY:-1,4,16} \
  cargo test --locked --test fleet_scale -- --ignored --nocapture fleet_scaling_benchmark 2>&1 | grep '^BENCH'
