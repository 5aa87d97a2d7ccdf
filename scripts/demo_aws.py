"""AWS-side helpers for `make demo`, through boto3 against the stand-ins.

  seed DOMAIN        store the DNS server's TSIG key as a secret, create the SES identity and
                     its secret, start a rotation; print JSON
                     {"arn", "token"}
  result DOMAIN ARN SETSECRET_REPORT
                     print the outcome; exit 1 unless SES signs with the AWSCURRENT selector
  wait DOMAIN SECONDS
                     follow SES's DKIM status until it leaves PENDING (the SES model looks at
                     DNS on its own schedule, as SES does); exit 1 unless it is SUCCESS
"""
import json
import os
import sys
import time

import boto3

ses = boto3.client("sesv2")
sm = boto3.client("secretsmanager")
FAKE_LAMBDA = "arn:aws:lambda:us-east-1:123456789012:function:ses-dkim-rotator"


def seed(domain):
    # The TSIG key of the test DNS server, stored as an operator would (never a plain variable).
    sm.create_secret(Name="dns/tsig", SecretString=json.dumps({
        "name": os.environ["DKIM_TEST_TSIG_NAME"],
        "algorithm": os.environ["DKIM_TEST_TSIG_ALGORITHM"],
        "secret": os.environ["DKIM_TEST_TSIG_SECRET"],
    }))
    ses.create_email_identity(EmailIdentity=domain)
    arn = sm.create_secret(Name=f"dkim/{domain}", SecretString=json.dumps({"identity": domain}))["ARN"]
    # The stand-in fails the invoke of a Lambda it does not host, after staging AWSPENDING:
    # exactly the state Secrets Manager leaves before it invokes createSecret.
    try:
        sm.rotate_secret(SecretId=arn, RotationLambdaARN=FAKE_LAMBDA, RotationRules={"AutomaticallyAfterDays": 90})
    except Exception:
        pass
    stages = sm.describe_secret(SecretId=arn)["VersionIdsToStages"]
    token = next(v for v, s in stages.items() if s == ["AWSPENDING"])
    print(json.dumps({"arn": arn, "token": token}))


def ses_selector(dkim):
    """The selector SES signs with: for BYODKIM, SES reports it in `Tokens`."""
    if dkim.get("SigningAttributesOrigin") == "EXTERNAL" and dkim.get("Tokens"):
        return dkim["Tokens"][0]
    return None


def wait(domain, seconds):
    """Prints SES's DKIM status as it changes, until it is no longer PENDING."""
    deadline = time.monotonic() + float(seconds)
    started = time.monotonic()
    last = None
    while True:
        status = ses.get_email_identity(EmailIdentity=domain)["DkimAttributes"].get("Status")
        if status != last:
            print(f"   after {time.monotonic() - started:4.1f} s   SES DKIM status {status}")
            last = status
        if status != "PENDING" or time.monotonic() > deadline:
            break
        time.sleep(0.5)
    if status != "SUCCESS":
        print(f"   SES did not verify the new key (status {status})", file=sys.stderr)
        sys.exit(1)


def result(domain, arn, set_secret_report):
    """Prints the outcome of the rotation; exits non-zero unless SES uses the new selector."""
    dkim = ses.get_email_identity(EmailIdentity=domain)["DkimAttributes"]
    current = json.loads(sm.get_secret_value(SecretId=arn, VersionStage="AWSCURRENT")["SecretString"])
    record = json.load(open(set_secret_report))["dns_record"]
    selector = ses_selector(dkim)
    rows = [
        ("new selector", f'{current.get("selector")} ({current.get("key_bits")}-bit RSA)'),
        ("previous", current.get("previous_selector") or "(none: first rotation)"),
        ("TXT record name", record["name"]),
        ("TXT record value", record["presentation"]),
        ("SES DKIM origin", dkim.get("SigningAttributesOrigin")),
        ("SES DKIM status", dkim.get("Status")),
        ("SES selector", selector),
    ]
    for label, value in rows:
        print(f"   {label:<17} {value}")
    ok = dkim.get("SigningAttributesOrigin") == "EXTERNAL" and selector and selector == current.get("selector")
    if not ok:
        print("   MISMATCH: SES does not sign with the selector in AWSCURRENT", file=sys.stderr)
        sys.exit(1)


if __name__ == "__main__":
    command, *args = sys.argv[1:]
    {"seed": seed, "result": result, "wait": wait}[command](*args)
