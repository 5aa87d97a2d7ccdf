#!/usr/bin/env python3
"""Self-test of scripts/aws_front.py (AWS's Route 53 and Secrets Manager quotas in front of moto).

    $VENV/bin/python scripts/aws_front_selftest.py

Starts moto_server and the front on free loopback ports and drives the front with boto3, SDK
retries off, so every refusal is seen as AWS would send it. Exit 0 when every check passed,
1 otherwise; it never skips a check.
"""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import time
import urllib.request

import boto3
from botocore.config import Config
from botocore.exceptions import ClientError

HERE = os.path.dirname(os.path.abspath(__file__))
FRONT = os.path.join(HERE, "aws_front.py")
FAILURES: list[str] = []
PASSED = 0


def check(cond: bool, what: str, detail=None) -> bool:
    global PASSED
    if cond:
        PASSED += 1
        print(f"  ok   {what}")
    else:
        FAILURES.append(what)
        print(f"  FAIL {what}" + (f": {detail}" if detail is not None else ""))
    return cond


def free_port() -> int:
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    return port


def wait_port(port: int, proc: subprocess.Popen, name: str) -> None:
    for _ in range(150):
        if proc.poll() is not None:
            raise SystemExit(f"{name} exited during start-up (status {proc.returncode})")
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.2):
                return
        except OSError:
            time.sleep(0.1)
    raise SystemExit(f"{name} did not listen on {port}")


def client(service: str, url: str, key: str = "selftest"):
    return boto3.client(service, endpoint_url=url, region_name="us-east-1",
                        aws_access_key_id=key, aws_secret_access_key="x",
                        config=Config(retries={"total_max_attempts": 1, "mode": "standard"}))


def error_code(call) -> str | None:
    try:
        call()
        return None
    except ClientError as err:
        return err.response["Error"]["Code"]


def upsert(r53, zone: str, name: str, value: str) -> dict:
    return r53.change_resource_record_sets(HostedZoneId=zone, ChangeBatch={"Changes": [{
        "Action": "UPSERT", "ResourceRecordSet": {
            "Name": name, "Type": "TXT", "TTL": 60,
            "ResourceRecords": [{"Value": f'"{value}"'}]}}]})


def main() -> int:
    moto_bin = os.path.join(os.path.dirname(sys.executable), "moto_server")
    moto_port, front_port = free_port(), free_port()
    procs = []
    try:
        procs.append(subprocess.Popen([moto_bin, "-H", "127.0.0.1", "-p", str(moto_port)],
                                      stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL))
        wait_port(moto_port, procs[-1], "moto_server")
        procs.append(subprocess.Popen(
            [sys.executable, FRONT, "--port", str(front_port),
             "--upstream", f"http://127.0.0.1:{moto_port}", "--zone-busy", "0.5",
             "--insync-after", "1.5", "--secrets-write-rate", "10", "--unmetered-key", "TOOLS"],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL))
        wait_port(front_port, procs[-1], "aws_front")
        url = f"http://127.0.0.1:{front_port}"
        run_checks(url)
    finally:
        for proc in procs:
            proc.terminate()
            proc.wait(timeout=10)
    print(f"aws_front self-test: {PASSED} passed, {len(FAILURES)} failed"
          + (": " + "; ".join(FAILURES) if FAILURES else ""))
    return 1 if FAILURES else 0


def run_checks(url: str) -> None:
    tools = client("route53", url, "TOOLS")
    zone = tools.create_hosted_zone(Name="front.test", CallerReference=str(time.time()))
    zone_id = zone["HostedZone"]["Id"].split("/")[-1]
    other = tools.create_hosted_zone(Name="other.test", CallerReference=str(time.time()) + "b")
    other_id = other["HostedZone"]["Id"].split("/")[-1]

    print("== Route 53: a change is PENDING, then INSYNC")
    answer = upsert(tools, zone_id, "a._domainkey.front.test", "v=DKIM1; p=A")
    change = answer["ChangeInfo"]["Id"]
    check(answer["ChangeInfo"]["Status"] == "PENDING", "ChangeResourceRecordSets answers PENDING",
          answer["ChangeInfo"])
    check(tools.get_change(Id=change)["ChangeInfo"]["Status"] == "PENDING",
          "GetChange right after answers PENDING")

    print("== Route 53: a busy zone refuses the next change")
    code = error_code(lambda: upsert(tools, zone_id, "b._domainkey.front.test", "v=DKIM1; p=B"))
    check(code == "PriorRequestNotComplete", "a second change within --zone-busy", code)
    other_change = upsert(tools, other_id, "b._domainkey.other.test", "v=DKIM1; p=B")
    check(other_change["ChangeInfo"]["Status"] == "PENDING",
          "another zone takes its change meanwhile")
    check(other_change["ChangeInfo"]["Id"] != change,
          "each change has an id of its own (moto gives all one)", other_change["ChangeInfo"])
    time.sleep(0.6)
    check(error_code(lambda: upsert(tools, zone_id, "c._domainkey.front.test", "v=DKIM1; p=C"))
          is None, "the zone takes a change once it is free")
    time.sleep(1.5)
    check(tools.get_change(Id=change)["ChangeInfo"]["Status"] == "INSYNC",
          "GetChange answers INSYNC after --insync-after")
    names = [r["Name"] for r in tools.list_resource_record_sets(HostedZoneId=zone_id)
             ["ResourceRecordSets"]]
    check("c._domainkey.front.test." in names and "b._domainkey.front.test." not in names,
          "the refused change reached nothing, the accepted ones moto", names)

    print("== Route 53: 5 requests/s per account")
    metered = client("route53", url)
    codes = [error_code(lambda: metered.list_hosted_zones()) for _ in range(8)]
    check(codes[:5] == [None] * 5, "a quiet account makes 5 requests back to back", codes)
    check("Throttling" in codes[5:], "the 6th-8th within the second are throttled", codes)
    time.sleep(1.0)
    check(error_code(lambda: metered.list_hosted_zones()) is None, "a second later it may again")
    check(all(error_code(lambda: tools.list_hosted_zones()) is None for _ in range(10)),
          "an unmetered key is not held to the rate")

    print("== Secrets Manager: writes at --secrets-write-rate (10/s here) per region, reads unmetered")
    sm_tools = client("secretsmanager", url, "TOOLS")
    arn = sm_tools.create_secret(Name="front/selftest", SecretString="{}")["ARN"]
    sm = client("secretsmanager", url)
    codes = [error_code(lambda i=i: sm.put_secret_value(SecretId=arn, SecretString=f'{{"n":{i}}}'))
             for i in range(20)]
    check(codes.count(None) >= 10 and "ThrottlingException" in codes,
          "PutSecretValue beyond the rate is ThrottlingException",
          {c: codes.count(c) for c in set(codes)})
    check(error_code(lambda: sm.update_secret_version_stage(
        SecretId=arn, VersionStage="X", MoveToVersionId="0" * 32)) == "ThrottlingException",
          "UpdateSecretVersionStage shares PutSecretValue's budget")
    check(error_code(lambda: sm.tag_resource(SecretId=arn, Tags=[{"Key": "k", "Value": "v"}]))
          is None, "TagResource has a budget of its own")
    check(all(error_code(lambda: sm.describe_secret(SecretId=arn)) is None for _ in range(60)),
          "DescribeSecret is not held to the write budget")
    time.sleep(1.1)
    check(error_code(lambda: sm.put_secret_value(SecretId=arn, SecretString='{"n":"again"}'))
          is None, "a second later writes pass again")

    with urllib.request.urlopen(url + "/_front/state") as response:
        state = json.load(response)
    check(state["prior_request_not_complete"] == 1 and any(
        b["refused"] > 0 for b in state["budgets"].values()),
          "GET /_front/state counts what was refused", state)


if __name__ == "__main__":
    sys.exit(main())
