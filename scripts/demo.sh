#!/usr/bin/env bash
# `make demo`: one real rotation of a BYODKIM key, through the Lambda Runtime API.
# Runs inside scripts/testbed.sh (stand-ins up). Seeds an SES identity and its secret, starts
# the function under `cargo lambda watch`, sends the four rotation steps with
# `cargo lambda invoke`, and prints what happened.
set -euo pipefail
cd "$(dirname "$0")/.."

DOMAIN=${DEMO_DOMAIN:-example.com}
WORK=$(mktemp -d "${TMPDIR:-/tmp}/ses-dkim-demo.XXXXXX")
WATCH_PID=
cleanup() {
  if [ -n "${WATCH_PID}" ]; then
    kill -- "-${WATCH_PID}" 2>/dev/null || kill "${WATCH_PID}" 2>/dev/null || true
    wait "${WATCH_PID}" 2>/dev/null || true
  fi
  rm -rf "${WORK}"
}
trap cleanup EXIT

bold() { printf '\033[1m%s\033[0m\n' "$*"; }
field() { python -c "import json,sys; d=json.load(open(sys.argv[1])); print(eval(sys.argv[2], {}, {'d': d}))" "$@"; }

bold "1. Seed: SES identity ${DOMAIN}, secret dkim/${DOMAIN} = {\"identity\": \"${DOMAIN}\"}, rotation started"
echo "   DNS     knot at ${DKIM_TEST_DNS_SERVER}, authoritative for ${DKIM_TEST_DNS_ZONE}, RFC 2136 updates signed with TSIG"
python scripts/demo_aws.py seed "${DOMAIN}" > "${WORK}/seed.json"
ARN=$(field "${WORK}/seed.json" 'd["arn"]')
TOKEN=$(field "${WORK}/seed.json" 'd["token"]')
echo "   secret  ${ARN}"
echo "   token   ${TOKEN} (staged AWSPENDING)"

bold "2. Start the function under cargo lambda watch (Lambda Runtime API on loopback)"
PORT=$(python -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1]); s.close()')
cat > "${WORK}/function.env" <<ENV
DKIM_ALLOWED_IDENTITIES=${DOMAIN}
DKIM_KEY_BITS=${DKIM_KEY_BITS:-1024}
DKIM_DNS_PUBLISHER=rfc2136
DKIM_DNS_UPDATE_SERVER=${DKIM_TEST_DNS_SERVER}
DKIM_DNS_ZONE=${DKIM_TEST_DNS_ZONE}
DKIM_DNS_TSIG_SECRET_ID=dns/tsig
DKIM_DNS_SERVERS=${DKIM_TEST_DNS_SERVER}
DKIM_SECRET_IDS=${ARN}
AWS_LAMBDA_LOG_FORMAT=JSON
AWS_ACCESS_KEY_ID=${AWS_ACCESS_KEY_ID}
AWS_SECRET_ACCESS_KEY=${AWS_SECRET_ACCESS_KEY}
AWS_REGION=${AWS_REGION}
AWS_EC2_METADATA_DISABLED=true
AWS_ENDPOINT_URL_SESV2=${AWS_ENDPOINT_URL_SESV2}
AWS_ENDPOINT_URL_SECRETS_MANAGER=${AWS_ENDPOINT_URL_SECRETS_MANAGER}
ENV
setsid cargo lambda watch --invoke-address 127.0.0.1 --invoke-port "${PORT}" --env-file "${WORK}/function.env" \
  > "${WORK}/watch.log" 2>&1 &
WATCH_PID=$!
for _ in $(seq 1 600); do
  (exec 3<>"/dev/tcp/127.0.0.1/${PORT}") 2>/dev/null && break
  kill -0 "${WATCH_PID}" 2>/dev/null || { cat "${WORK}/watch.log"; exit 1; }
  sleep 0.5
done
echo "   runtime API on 127.0.0.1:${PORT}"

bold "3. Run the four rotation steps: publish -> verify -> switch"
describe() {
  case "$1" in
    createSecret) field "$2" '"new key, selector " + d["selector"] + " (AWSPENDING)"' ;;
    setSecret)    field "$2" '"TXT " + d["dns_record"]["name"] + " written by RFC 2136 update"' ;;
    testSecret)   field "$2" '"DNS check at the authoritative server: " + d["dns_check"]' ;;
    finishSecret) field "$2" '"SES switched (origin " + d["ses_origin"] + ", status " + d["ses_status"] + "), AWSCURRENT moved"' ;;
  esac
}
for STEP in createSecret setSecret testSecret finishSecret; do
  printf '{"Step":"%s","SecretId":"%s","ClientRequestToken":"%s"}' "${STEP}" "${ARN}" "${TOKEN}" > "${WORK}/${STEP}.json"
  if ! cargo lambda invoke ses-dkim-rotator --invoke-address 127.0.0.1 --invoke-port "${PORT}" \
      --data-file "${WORK}/${STEP}.json" --output-format json > "${WORK}/${STEP}.out" 2> "${WORK}/${STEP}.err"; then
    echo "   ${STEP} FAILED:"; cat "${WORK}/${STEP}.err" "${WORK}/${STEP}.out"; exit 1
  fi
  printf '   %-13s -> %-22s %s\n' "${STEP}" "$(field "${WORK}/${STEP}.out" 'd["outcome"]')" "$(describe "${STEP}" "${WORK}/${STEP}.out")"
done

bold "4. Result of the switch (SES verifies asynchronously: PENDING is the normal answer now)"
python scripts/demo_aws.py result "${DOMAIN}" "${ARN}" "${WORK}/setSecret.out"
NAME=$(field "${WORK}/setSecret.out" 'd["dns_record"]["name"]')
echo "   dig says          $(kdig @127.0.0.1 -p "${DKIM_TEST_DNS_SERVER##*:}" +short TXT "${NAME}" | cut -c1-70)..."

bold "5. SES looks the record up on its own schedule (real SES: minutes to 72 h; the model: after ${SES_MODEL_FIRST_LOOK_AFTER:-?} s)"
python scripts/demo_aws.py wait "${DOMAIN}" 60

bold "6. The daily scheduled run (the watcher) confirms it; the previous selector's grace period starts now"
printf '{"version":"0","source":"aws.events","detail-type":"Scheduled Event","detail":{}}' > "${WORK}/scheduled.json"
cargo lambda invoke ses-dkim-rotator --invoke-address 127.0.0.1 --invoke-port "${PORT}" \
  --data-file "${WORK}/scheduled.json" --output-format json > "${WORK}/scheduled.out"
ACTION=$(field "${WORK}/scheduled.out" 'd["identities"][0]["action"]')
echo "   scheduled run -> ${ACTION}"
[ "${ACTION}" = "confirmed" ] || { echo "   expected confirmed"; cat "${WORK}/scheduled.out"; grep -i "scheduled run" "${WORK}/watch.log" | tail -3; exit 1; }
bold "Rotation complete: SES verified and signs ${DOMAIN} with the new selector."
