#!/usr/bin/env python3
"""No secret in any log: the function binary run as Lambda runs it, at its most verbose.

Runs inside scripts/testbed.sh (moto, knot, the SES model up), like scripts/crash_harness.py,
whose Runtime API and AWS helpers it uses. The binary polls a Runtime API served here, with
`AWS_LAMBDA_LOG_LEVEL=TRACE` and `RUST_LOG=trace`, in JSON and in text log format, through:

- Secrets Manager's four steps in RFC 2136 mode (a TSIG key from Secrets Manager), every event
  carrying a `RotationToken`, twice (the second rotation reads the first key back);
- a malformed event that carries a `RotationToken` (the refusal path);
- a forced scheduled run (rotate) and a run that reads every key (status);

then the `dkim-rotator` CLI (status, plan, rotate, rollback, each as a table and as JSON, with
`RUST_LOG=trace`). Every byte each process wrote to stdout and stderr is searched for every
private key the secret ever held (each 24-character window of its base64), every
`RotationToken` and the TSIG secret (whole, and in windows when long): secrets shorter than a
window are searched whole.

  log_scan.py FUNCTION_BINARY CLI_BINARY
Exit 0 when nothing is found and every invocation did what it should; 1 otherwise.
"""
import json
import os
import subprocess
import sys
import tempfile
import time
import uuid

import crash_harness as h

WINDOW = 24


def fragments(secret):
    """Pieces of `secret` that must never appear: the whole when short, else every window."""
    secret = secret.strip()
    if len(secret) <= WINDOW * 2:
        return [secret]
    return [secret[i:i + WINDOW] for i in range(0, len(secret) - WINDOW + 1, WINDOW // 2)]


def invoke(binary, env, event):
    """One invocation in a fresh process; returns (kind, body, everything it wrote)."""
    runtime = h.Runtime()
    runtime.event = event
    # A file, not a pipe: at TRACE a process writes more than a pipe holds.
    with tempfile.TemporaryFile() as written:
        process = subprocess.Popen(
            [binary], env=dict(env, AWS_LAMBDA_RUNTIME_API=runtime.address),
            stdout=written, stderr=subprocess.STDOUT,
        )
        deadline = time.monotonic() + 120
        while not runtime.done.is_set() and process.poll() is None \
                and time.monotonic() < deadline:
            runtime.done.wait(0.02)
        process.kill()
        process.wait()
        written.seek(0)
        output = written.read()
    runtime.server.shutdown()
    if not runtime.done.is_set():
        raise SystemExit(f"no answer to {event}:\n{output.decode(errors='replace')[-3000:]}")
    kind, body = runtime.result
    return kind, body, output


def cli(binary, env, *args):
    done = subprocess.run([binary, *args], env=dict(env, RUST_LOG="trace"),
                          stdout=subprocess.PIPE, stderr=subprocess.STDOUT, timeout=120)
    return done.returncode, done.stdout


def main():
    binary, cli_binary = sys.argv[1], sys.argv[2]
    h.TSIG_SECRET_ID = f"log-scan/tsig-{uuid.uuid4().hex[:8]}"
    h.sm.create_secret(Name=h.TSIG_SECRET_ID, SecretString=json.dumps({
        "name": h.ENV["DKIM_TEST_TSIG_NAME"], "algorithm": h.TSIG_ALGORITHM,
        "secret": h.ENV["DKIM_TEST_TSIG_SECRET"]}))
    direct = (h.MOTO, h.SES_URL, f"{h.DNS_HOST}:{h.DNS_PORT}")
    outputs = []  # (what, bytes)
    secrets = {"TSIG secret": h.ENV["DKIM_TEST_TSIG_SECRET"]}
    problems = []
    public_parts = []

    for log_format in ("JSON", "Text"):
        env = h.function_env("rfc2136", direct)
        env.update({"AWS_LAMBDA_LOG_LEVEL": "TRACE", "RUST_LOG": "trace",
                    "AWS_LAMBDA_LOG_FORMAT": log_format})
        identity = h.Identity("rfc2136")
        for rotation in range(2):
            token = identity.start_rotation()
            rotation_token = f"rt{uuid.uuid4().hex}{rotation}"
            secrets[f"RotationToken {log_format} {rotation}"] = rotation_token
            for step in h.STEPS:
                event = dict(h.step_event(identity, step, token), RotationToken=rotation_token)
                kind, body, output = invoke(binary, env, event)
                outputs.append((f"{log_format} {step} #{rotation + 1}", output))
                if kind != "ok":
                    problems.append(f"{log_format} {step} #{rotation + 1} failed: {body}")
            h.ses_model("POST", "/_model/check", {"identity": identity.domain})
        bad_token = f"bad{uuid.uuid4().hex}"
        secrets[f"RotationToken of a bad event ({log_format})"] = bad_token
        kind, body, output = invoke(binary, env, {
            "Step": "createSecret", "SecretId": identity.arn, "ClientRequestToken": 7,
            "RotationToken": bad_token})
        outputs.append((f"{log_format} malformed event", output))
        if kind != "error":
            problems.append(f"the malformed event was not refused: {kind} {body}")

        scheduled = h.Identity("rfc2136")
        for event in ({"secret_ids": [scheduled.arn], "force": True},
                      {"secret_ids": [scheduled.arn, identity.arn]}):
            kind, body, output = invoke(binary, env, event)
            outputs.append((f"{log_format} scheduled {event}", output))
            if kind != "ok":
                problems.append(f"scheduled run failed: {body}")

        for who in (identity, scheduled):
            versions = h.sm.list_secret_version_ids(SecretId=who.arn, IncludeDeprecated=True)
            for version in versions["Versions"]:
                value = h.sm.get_secret_value(SecretId=who.arn, VersionId=version["VersionId"])
                doc = json.loads(value.get("SecretString") or "{}")
                if doc.get("private_key"):
                    secrets[f"private key {who.domain} {version['VersionId'][:8]}"] = \
                        doc["private_key"]
                    # The private key holds the modulus, which the TXT record publishes: a
                    # window the public key also has is public.
                    public_parts.append(doc.get("public_key") or "")

        cli_env = dict(env)
        for args in (["status", "--secret-id", identity.arn], ["plan", "--secret-id", identity.arn],
                     ["rotate", "--secret-id", scheduled.arn, "--force"],
                     ["rollback", "--secret-id", scheduled.arn]):
            for json_flag in ([], ["--json"]):
                code, output = cli(cli_binary, cli_env, *args, *json_flag)
                outputs.append((f"CLI {' '.join(args[:1] + json_flag)} ({log_format})", output))

    keys = [k for k in secrets if k.startswith("private key")]
    if len(keys) < 4:
        problems.append(f"expected at least 4 private keys to look for, found {len(keys)}")
    found = []
    for what, output in outputs:
        text = output.decode(errors="replace")
        for name, secret in secrets.items():
            for piece in fragments(secret):
                if any(piece in public for public in public_parts):
                    continue
                at = text.find(piece) if piece else -1
                if at >= 0:
                    # What came before it (never the secret itself): which line carried it.
                    before = text[max(0, at - 160):at].replace("\n", " | ")
                    found.append(f"{name} in the output of {what}, after: ...{before}")
                    break
    # This crate writes nothing at TRACE, and TRACE of other crates is dropped: the proof that
    # the level was raised is the dependencies' DEBUG lines.
    traced = sum(1 for _, o in outputs if b"DEBUG" in o)
    total = sum(len(o) for _, o in outputs)
    print(f"log scan: {len(outputs)} processes wrote {total} bytes ({traced} with DEBUG lines); "
          f"searched for {len(secrets)} secrets ({len(keys)} private keys, "
          f"{sum(1 for k in secrets if k.startswith('RotationToken'))} RotationTokens, the TSIG "
          f"secret): {len(found)} found")
    if traced == 0:
        problems.append("no process wrote a DEBUG line: the level was not raised")
    for line in found + problems:
        print(f"  {line}", file=sys.stderr)
    sys.exit(1 if found or problems else 0)


if __name__ == "__main__":
    main()
