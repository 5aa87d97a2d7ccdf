#!/usr/bin/env bash
# Installs, when missing, every tool `make test` and `make demo` need, at pinned versions
# (Debian's knot is whatever the release ships: 3.2 on bookworm).
# Python tools go into one virtualenv outside the repo, so fresh clones on the same machine
# reuse it. SESv2 is modelled by scripts/ses_model.py (stdlib + dnspython + dkimpy).
# aws-sam-cli 1.170.0 pins boto3==1.43.108 and click==8.1.8 and needs cfn-lint>=1.52.0,<1.59:
# bump cfn-lint and aws-sam-cli together.
set -euo pipefail

PY_PINS=(
  "moto[server]==5.2.5"
  "cfn-lint==1.58.0"
  "dkimpy==1.1.8"
  "dnspython==2.7.0"
  "cargo-lambda==1.9.2"
  "aws-sam-cli==1.170.0"
)
VENV="${SES_DKIM_VENV:-$HOME/.cache/ses-dkim-rotator/venv}"

say() { printf '==> %s\n' "$*" >&2; }

ensure_rust_components() {
  command -v cargo >/dev/null || { echo "cargo is not installed; install Rust with rustup first" >&2; exit 1; }
  for component in rustfmt clippy; do
    if ! rustup component list --installed 2>/dev/null | grep -q "^${component}"; then
      say "rustup component add ${component}"
      rustup component add "${component}"
    fi
  done
}

ensure_python_tools() {
  local stamp="${VENV}/.pins"
  local wanted
  wanted=$(printf '%s\n' "${PY_PINS[@]}")
  if [ -x "${VENV}/bin/python" ] && [ "$(cat "${stamp}" 2>/dev/null)" = "${wanted}" ]; then
    return
  fi
  say "installing Python tools into ${VENV}: ${PY_PINS[*]}"
  python3 -m venv "${VENV}"
  "${VENV}/bin/pip" install --quiet --disable-pip-version-check "${PY_PINS[@]}"
  printf '%s' "${wanted}" > "${stamp}"
}

ensure_dns_server() {
  # Knot DNS: the real DNS server the tests publish to (RFC 2136 + TSIG) and check against.
  if command -v knotd >/dev/null && command -v kdig >/dev/null && command -v knsupdate >/dev/null; then
    return
  fi
  say "installing knot and knot-dnsutils from Debian"
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq >&2
  apt-get install -y -qq knot knot-dnsutils >&2
}

ensure_rust_components
ensure_dns_server
ensure_python_tools
echo "${VENV}"
