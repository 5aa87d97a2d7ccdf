#!/usr/bin/env bash
# make release: the deployable arm64 bootstrap, built by AWS SAM from template.yaml exactly as
# `sam deploy` would ship it. Steps: pinned tools (scripts/tools.sh: aws-sam-cli, cargo-lambda
# and its zig), the aarch64 standard library, `sam validate --lint`, `sam build` (which runs
# cargo lambda for the arm64 function), then the deployment zip's size (`RELEASE_MAX_ZIP_BYTES`,
# default 3 MB, is a target: exit 1 when the zip is larger).
set -euo pipefail
cd "$(dirname "$0")/.."

scripts/tools.sh >/dev/null
export PATH="$HOME/.cache/ses-dkim-rotator/venv/bin:$HOME/.cargo/bin:$PATH"
export SAM_CLI_TELEMETRY=0 SAM_CLI_CONTACT_TELEMETRY=0
rustup target list --installed | grep -qx aarch64-unknown-linux-gnu ||
  rustup target add aarch64-unknown-linux-gnu

echo "==> sam validate --lint"
sam validate --lint --template template.yaml --region us-east-1

echo "==> sam build (arm64, cargo lambda)"
start=$(date +%s)
# Rust through cargo lambda is a SAM beta feature.
sam build --beta-features --template template.yaml --build-dir .aws-sam/build \
  --region us-east-1 RotatorFunction
echo "    built in $(( $(date +%s) - start )) s"

bootstrap=.aws-sam/build/RotatorFunction/bootstrap
file "$bootstrap" | grep -q "ARM aarch64" || { echo "FAIL: $bootstrap is not an arm64 executable" >&2; exit 1; }
python3 - "$bootstrap" "${RELEASE_MAX_ZIP_BYTES:-3000000}" <<'PY'
import io, os, sys, zipfile
path, limit = sys.argv[1], int(sys.argv[2])
buffer = io.BytesIO()
with zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED, compresslevel=9) as z:
    info = zipfile.ZipInfo("bootstrap")
    info.external_attr = 0o755 << 16
    info.compress_type = zipfile.ZIP_DEFLATED
    with open(path, "rb") as f:
        z.writestr(info, f.read(), compresslevel=9)
size, raw = len(buffer.getvalue()), os.path.getsize(path)
verdict = "met" if size <= limit else "MISSED"
print(f"arm64 bootstrap {raw / 1e6:.2f} MB; deployment zip {size / 1e6:.2f} MB (target <= {limit / 1e6:.2f} MB: {verdict})")
sys.exit(0 if size <= limit else 1)
PY
