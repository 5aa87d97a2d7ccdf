#!/usr/bin/env bash
# Runs a command with the local AWS stand-ins up, and always stops them afterwards.
#
#   scripts/testbed.sh <command> [args...]
#
# Starts, on free loopback ports:
#   - moto_server: Secrets Manager, Route 53, SNS and SQS (closest to AWS's rotation semantics);
#   - aws_front:   in front of moto for Route 53 and Secrets Manager, the quotas AWS has and moto
#                  lacks (scripts/aws_front.py): Route 53's account rate, PriorRequestNotComplete,
#                  changes PENDING before INSYNC; Secrets Manager's write rates;
#   - knotd:       a real DNS server, authoritative for `$DKIM_TEST_DNS_ZONE` (default
#                  `dkim.test`), taking RFC 2136 updates signed with a TSIG key made for this run;
#   - ses_model:   SESv2's DKIM side as AWS documents it (scripts/ses_model.py): PENDING after a
#                  put, SUCCESS/FAILED only once it has looked at DNS (knot). It looks when a test
#                  says so (POST /_model/check) or every $SES_MODEL_CHECK_INTERVAL seconds (the
#                  demo); see docs/TESTING.md.
# Exports AWS_ENDPOINT_URL_* for the Rust SDK, fake credentials and a region, runs the command,
# and stops both servers on exit, whether the command passed, failed or was interrupted.
set -euo pipefail

cd "$(dirname "$0")/.."
VENV=$(scripts/tools.sh)
STATE=$(mktemp -d "${TMPDIR:-/tmp}/ses-dkim-testbed.XXXXXX")
PIDS=()

stop_all() {
  local status=$?
  for pid in "${PIDS[@]:-}"; do
    [ -n "${pid}" ] && kill "${pid}" 2>/dev/null || true
  done
  for pid in "${PIDS[@]:-}"; do
    [ -n "${pid}" ] && wait "${pid}" 2>/dev/null || true
  done
  if [ "${status}" -ne 0 ] && [ -z "${TESTBED_QUIET:-}" ]; then
    for log in "${STATE}"/*.log; do
      [ -s "${log}" ] || continue
      echo "---- last lines of $(basename "${log}") ----" >&2
      tail -n 15 "${log}" >&2
    done
  fi
  rm -rf "${STATE}"
  exit "${status}"
}
trap stop_all EXIT
trap 'exit 130' INT TERM

free_port() {
  "${VENV}/bin/python" -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1]); s.close()'
}

wait_for_port() {
  local name=$1 port=$2 pid=$3
  for _ in $(seq 1 150); do
    if ! kill -0 "${pid}" 2>/dev/null; then
      echo "${name} exited during start-up; its log:" >&2
      cat "${STATE}/${name}.log" >&2
      exit 1
    fi
    if (exec 3<>"/dev/tcp/127.0.0.1/${port}") 2>/dev/null; then
      return
    fi
    sleep 0.2
  done
  echo "${name} did not listen on 127.0.0.1:${port} within 30 s" >&2
  exit 1
}

MOTO_PORT=$(free_port)
"${VENV}/bin/moto_server" -H 127.0.0.1 -p "${MOTO_PORT}" >"${STATE}/moto.log" 2>&1 &
PIDS+=($!)
wait_for_port moto "${MOTO_PORT}" "${PIDS[-1]}"

# AWS's rate quotas times this factor, for the SES model, the AWS front and the function's
# pacing (the in-memory quota tests run at AWS's own figures in virtual time).
export DKIM_TEST_QUOTA_SCALE="${DKIM_TEST_QUOTA_SCALE:-10}"
FRONT_PORT=$(free_port)
"${VENV}/bin/python" scripts/aws_front.py --port "${FRONT_PORT}" --upstream "http://127.0.0.1:${MOTO_PORT}" \
  --scale "${DKIM_TEST_QUOTA_SCALE}" --unmetered-key BEDTOOLS >"${STATE}/aws_front.log" 2>&1 &
PIDS+=($!)
wait_for_port aws_front "${FRONT_PORT}" "${PIDS[-1]}"

DNS_PORT=$(free_port)
DNS_ZONE=${DKIM_TEST_DNS_ZONE:-dkim.test}
TSIG_SECRET=$("${VENV}/bin/python" -c 'import base64,os; print(base64.b64encode(os.urandom(32)).decode())')
mkdir -p "${STATE}/knot/zones" "${STATE}/knot/db"
cat > "${STATE}/knot/zones/${DNS_ZONE}.zone" <<ZONE
\$ORIGIN ${DNS_ZONE}.
\$TTL 60
@    SOA ns1 hostmaster 1 60 60 3600 60
@    NS  ns1
ns1  A   127.0.0.1
ZONE
cat > "${STATE}/knot/knot.conf" <<CONF
server:
    rundir: "${STATE}/knot"
    listen: 127.0.0.1@${DNS_PORT}
log:
  - target: stderr
    any: info
database:
    storage: "${STATE}/knot/db"
key:
  - id: rotator-test.
    algorithm: hmac-sha256
    secret: ${TSIG_SECRET}
acl:
  - id: rotator-update
    key: rotator-test.
    action: update
template:
  - id: default
    storage: "${STATE}/knot/zones"
    file: "%s.zone"
    zonefile-sync: -1
    journal-content: changes
zone:
  - domain: ${DNS_ZONE}
    acl: rotator-update
CONF
knotd -c "${STATE}/knot/knot.conf" >"${STATE}/knot.log" 2>&1 &
PIDS+=($!)
wait_for_port knot "${DNS_PORT}" "${PIDS[-1]}"
export DKIM_TEST_DNS_SERVER="127.0.0.1:${DNS_PORT}" DKIM_TEST_DNS_ZONE="${DNS_ZONE}"

SES_PORT=$(free_port)
"${VENV}/bin/python" scripts/ses_model.py --port "${SES_PORT}" --dns-server "127.0.0.1:${DNS_PORT}" \
  --check-interval "${SES_MODEL_CHECK_INTERVAL:-0}" --first-look-after "${SES_MODEL_FIRST_LOOK_AFTER:-0}" \
  --window "${SES_MODEL_WINDOW:-259200}" --rate "${DKIM_TEST_QUOTA_SCALE}" --unmetered-key BEDTOOLS \
  >"${STATE}/ses_model.log" 2>&1 &
PIDS+=($!)
wait_for_port ses_model "${SES_PORT}" "${PIDS[-1]}"
export DKIM_TEST_TSIG_NAME=rotator-test. DKIM_TEST_TSIG_ALGORITHM=hmac-sha256 DKIM_TEST_TSIG_SECRET="${TSIG_SECRET}"

export AWS_ACCESS_KEY_ID=testing AWS_SECRET_ACCESS_KEY=testing AWS_REGION=us-east-1 AWS_DEFAULT_REGION=us-east-1
export AWS_EC2_METADATA_DISABLED=true
export AWS_ENDPOINT_URL_SECRETS_MANAGER="http://127.0.0.1:${FRONT_PORT}"
export AWS_ENDPOINT_URL_ROUTE_53="http://127.0.0.1:${FRONT_PORT}"
# moto itself, without the quotas: the crash harness counts calls to place its crash points,
# and a throttled-then-retried call would move them from run to run.
export DKIM_TEST_MOTO_URL="http://127.0.0.1:${MOTO_PORT}"
export AWS_ENDPOINT_URL_SESV2="http://127.0.0.1:${SES_PORT}"
export AWS_ENDPOINT_URL_SNS="http://127.0.0.1:${MOTO_PORT}"
export AWS_ENDPOINT_URL_SQS="http://127.0.0.1:${MOTO_PORT}"
export SES_DKIM_TESTBED_VENV="${VENV}"
export PATH="${VENV}/bin:${PATH}"
[ -n "${TESTBED_QUIET:-}" ] || echo "==> stand-ins up: moto (Secrets Manager, Route 53, SNS, SQS) on :${MOTO_PORT} behind AWS's quotas on :${FRONT_PORT}, knot (DNS, zone ${DNS_ZONE}) on :${DNS_PORT}, SES model (SESv2 DKIM) on :${SES_PORT}" >&2

"$@"
