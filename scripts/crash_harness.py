#!/usr/bin/env python3
"""Real crashes: the function's own process is SIGKILLed right after its N-th external call lands.

Runs inside scripts/testbed.sh (moto, knot, the SES model up). The function binary runs as Lambda
runs it: a process polling a Runtime API (served here) for one event. Every external call it
makes goes through a proxy here — Secrets Manager and Route 53 (to moto), SESv2 (to the SES
model), DNS updates and queries over UDP and TCP (to knot) — which counts them; with a crash
point N armed, the proxy lets call N through, hands back its answer, then kills the process
(SIGKILL: no destructor, no error path, no flush). The harness then does what the caller would:
Secrets Manager invokes the same step again; EventBridge runs the same schedule again. Nothing
is injected into the function; it is killed.

For each scenario, a reference run without a crash gives the calls (N = 1..len) and the end
state; then for every N a fresh identity is rotated with a crash after call N, and its end state
must equal the reference's: staging labels, the current document's fields (selector,
`previous_selector`), the rotator's tags (switch, previous, confirmation, retirement), SES's
origin and selector, and the TXT records of every selector involved — with selectors and times
replaced by their roles. After every invocation, killed or not, the invariants hold: SES signs
only with a selector DNS serves, and the previous record stays while SES has not verified the
current one.

Scenarios: Secrets Manager's four steps in each DNS mode (rfc2136, route53, hint — a person adds
the record after setSecret), and for an identity in two SES regions (one key, both switched);
`dkim-rotator abort` of an unfinished rotation (the CLI killed after each call and run again,
then the next rotation must resume the aborted key); the scheduled lifecycle (rotate a due key; SES verifies; confirm;
retire the previous record after a zero grace period; idle) in rfc2136 mode and in route53 mode
(a Route 53 retirement); the watcher's rollback (SES says FAILED for a second key: the first
is put back); and the queue (planner, workers, three identities).

  crash_harness.py BINARY [--scenario NAME ...] [--points 1,5,9]
(the `dkim-rotator` CLI is taken from BINARY's directory)
Exit 0 when every crash point of every scenario ends like the reference; 1 otherwise.
"""
import argparse
import http.client
import http.server
import json
import os
import re
import signal
import socket
import socketserver
import struct
import subprocess
import sys
import threading
import time
import uuid
from datetime import datetime, timedelta, timezone

import boto3
import dns.message
import dns.query
import dns.rcode
import dns.rdatatype
import dns.tsigkeyring
import dns.update

ENV = os.environ
# moto without the bed's quota front: crash points are call numbers, and a throttled call the
# SDK retries would move them from run to run.
MOTO = ENV.get("DKIM_TEST_MOTO_URL", ENV["AWS_ENDPOINT_URL_SECRETS_MANAGER"])
SES_URL = ENV["AWS_ENDPOINT_URL_SESV2"]
DNS_HOST, DNS_PORT = ENV["DKIM_TEST_DNS_SERVER"].rsplit(":", 1)
DNS_PORT = int(DNS_PORT)
ZONE = ENV["DKIM_TEST_DNS_ZONE"]
KEYRING = dns.tsigkeyring.from_text({ENV["DKIM_TEST_TSIG_NAME"]: ENV["DKIM_TEST_TSIG_SECRET"]})
TSIG_ALGORITHM = ENV["DKIM_TEST_TSIG_ALGORITHM"]
TSIG_SECRET_ID = "crash-harness/tsig"
FAKE_LAMBDA = "arn:aws:lambda:us-east-1:123456789012:function:ses-dkim-rotator"
TAG_PREFIX = "ses-dkim-rotator:"

sm = boto3.client("secretsmanager")
# The harness's own SES reads (set-up, invariants, end state) use the key the SES model does not
# meter (scripts/testbed.sh `--unmetered-key BEDTOOLS`): only the function is held to the quota,
# so the harness neither slows down on retries nor takes the function's share.
ses = boto3.client("sesv2", aws_access_key_id="BEDTOOLS", aws_secret_access_key="testing")
r53 = boto3.client("route53")


# ---- the proxy: counts every external call, kills the function after call N -----------------

class Proxy:
    """Counts calls; after the armed call lands and its answer is sent, SIGKILLs `pid`."""

    def __init__(self):
        self.lock = threading.Lock()
        self.calls = []
        self.kill_after = None
        self.pid = None
        self.killed = False

    def arm(self, pid, kill_after):
        with self.lock:
            self.calls, self.pid, self.kill_after, self.killed = [], pid, kill_after, False

    def landed(self, name):
        """Called after the answer of call `name` went back to the function."""
        with self.lock:
            self.calls.append(name)
            if self.kill_after is not None and len(self.calls) == self.kill_after and self.pid:
                os.kill(self.pid, signal.SIGKILL)
                self.killed = True


PROXY = Proxy()


def aws_call_name(method, path, headers):
    target = headers.get("X-Amz-Target")
    if target:
        return target.split(".")[-1]
    path = path.split("?")[0].rstrip("/")
    rules = [
        ("PUT", r"/v2/email/identities/[^/]+/dkim/signing$", "PutEmailIdentityDkimSigningAttributes"),
        ("GET", r"/v2/email/identities/[^/]+$", "GetEmailIdentity"),
        ("POST", r"/2013-04-01/hostedzone/[^/]+/rrset$", "ChangeResourceRecordSets"),
        ("GET", r"/2013-04-01/hostedzone/[^/]+/rrset$", "ListResourceRecordSets"),
        ("GET", r"/2013-04-01/change/[^/]+$", "GetChange"),
        ("GET", r"/2013-04-01/hostedzonesbyname$", "ListHostedZonesByName"),
        ("GET", r"/2013-04-01/hostedzone/[^/]+$", "GetHostedZone"),
    ]
    for m, pattern, name in rules:
        if method == m and re.search(pattern, path):
            return name
    return f"{method} {path}"


class QuietServer(http.server.ThreadingHTTPServer):
    """A killed function drops its connections mid-request: that is expected, not an error."""
    daemon_threads = True

    def handle_error(self, request, client_address):
        if not isinstance(sys.exc_info()[1], (ConnectionError, BrokenPipeError, TimeoutError)):
            super().handle_error(request, client_address)


def http_proxy(upstream):
    host, port = upstream.split("//")[1].split(":")

    class Handler(http.server.BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def log_message(self, *args):
            pass

        def forward(self):
            length = int(self.headers.get("Content-Length") or 0)
            body = self.rfile.read(length) if length else None
            connection = http.client.HTTPConnection(host, int(port), timeout=30)
            headers = {k: v for k, v in self.headers.items() if k.lower() != "connection"}
            connection.request(self.command, self.path, body=body, headers=headers)
            response = connection.getresponse()
            data = response.read()
            self.send_response(response.status)
            for k, v in response.getheaders():
                if k.lower() not in ("transfer-encoding", "connection", "content-length"):
                    self.send_header(k, v)
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)
            self.wfile.flush()
            PROXY.landed(aws_call_name(self.command, self.path, self.headers))

        do_GET = do_POST = do_PUT = do_DELETE = forward

    server = QuietServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return f"http://127.0.0.1:{server.server_address[1]}"


def dns_kind(wire):
    opcode = (struct.unpack("!H", wire[2:4])[0] >> 11) & 0xF
    return "DnsUpdate" if opcode == 5 else "DnsQuery"


def dns_proxy():
    """UDP and TCP on one port, forwarding to knot."""

    class Udp(socketserver.BaseRequestHandler):
        def handle(self):
            data, sock = self.request
            upstream = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
            upstream.settimeout(5)
            upstream.sendto(data, (DNS_HOST, DNS_PORT))
            reply, _ = upstream.recvfrom(65535)
            sock.sendto(reply, self.client_address)
            PROXY.landed(dns_kind(data))

    class Tcp(socketserver.BaseRequestHandler):
        def handle(self):
            client = self.request
            with socket.create_connection((DNS_HOST, DNS_PORT), timeout=5) as upstream:
                while True:
                    head = recv_exact(client, 2)
                    if not head:
                        return
                    message = recv_exact(client, struct.unpack("!H", head)[0])
                    upstream.sendall(head + message)
                    reply_head = recv_exact(upstream, 2)
                    reply = recv_exact(upstream, struct.unpack("!H", reply_head)[0])
                    client.sendall(reply_head + reply)
                    PROXY.landed(dns_kind(message))

    class ThreadingUdp(socketserver.ThreadingMixIn, socketserver.UDPServer):
        daemon_threads = True
        handle_error = QuietServer.handle_error

    class ThreadingTcp(socketserver.ThreadingMixIn, socketserver.TCPServer):
        daemon_threads = True
        allow_reuse_address = True
        handle_error = QuietServer.handle_error

    tcp = ThreadingTcp(("127.0.0.1", 0), Tcp)
    port = tcp.server_address[1]
    udp = ThreadingUdp(("127.0.0.1", port), Udp)
    for server in (tcp, udp):
        threading.Thread(target=server.serve_forever, daemon=True).start()
    return f"127.0.0.1:{port}"


def recv_exact(sock, n):
    data = b""
    while len(data) < n:
        chunk = sock.recv(n - len(data))
        if not chunk:
            return data if data else b""
        data += chunk
    return data


# ---- the function as Lambda runs it ---------------------------------------------------------

class Runtime:
    """A Lambda Runtime API serving one event to one process."""

    def __init__(self):
        self.event = None
        self.result = None
        self.done = threading.Event()
        runtime = self

        class Handler(http.server.BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args):
                pass

            def do_GET(self):
                if runtime.event is None:
                    time.sleep(60)  # no more work: the process waits here until it is stopped
                    return
                payload, runtime.event = json.dumps(runtime.event).encode(), None
                self.send_response(200)
                self.send_header("Lambda-Runtime-Aws-Request-Id", str(uuid.uuid4()))
                self.send_header("Lambda-Runtime-Deadline-Ms", str(int(time.time() * 1000) + 60_000))
                self.send_header("Lambda-Runtime-Invoked-Function-Arn", FAKE_LAMBDA)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(payload)))
                self.end_headers()
                self.wfile.write(payload)

            def do_POST(self):
                body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
                kind = "error" if self.path.endswith("/error") else "ok"
                runtime.result = (kind, json.loads(body or b"null"))
                self.send_response(202)
                self.send_header("Content-Length", "0")
                self.end_headers()
                runtime.done.set()

        self.server = QuietServer(("127.0.0.1", 0), Handler)
        threading.Thread(target=self.server.serve_forever, kwargs={"poll_interval": 0.01}, daemon=True).start()
        self.address = f"127.0.0.1:{self.server.server_address[1]}"


def invoke(binary, env, event, kill_after=None):
    """One invocation in a fresh process. Returns ('ok'|'error'|'killed', body, calls)."""
    runtime = Runtime()
    runtime.event = event
    process = subprocess.Popen(
        [binary], env=dict(env, AWS_LAMBDA_RUNTIME_API=runtime.address),
        stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
    )
    PROXY.arm(process.pid, kill_after)
    while not runtime.done.is_set() and process.poll() is None:
        runtime.done.wait(0.02)
    if runtime.done.is_set():
        process.kill()
    process.wait()
    stderr = process.stderr.read().decode(errors="replace")
    runtime.server.shutdown()
    calls = list(PROXY.calls)
    if PROXY.killed and not runtime.done.is_set():
        return "killed", None, calls
    if not runtime.done.is_set():
        raise SystemExit(f"the function exited on its own (status {process.returncode}):\n{stderr[-3000:]}")
    kind, body = runtime.result
    return kind, body, calls


# ---- AWS and DNS state ------------------------------------------------------------------------

def dns_txt(name):
    query = dns.message.make_query(name, dns.rdatatype.TXT)
    answer = dns.query.udp(query, DNS_HOST, port=DNS_PORT, timeout=3)
    return ["".join(s.decode() for s in rdata.strings) for rrset in answer.answer for rdata in rrset]


def dns_set(name, value):
    update = dns.update.Update(ZONE, keyring=KEYRING, keyalgorithm=TSIG_ALGORITHM)
    update.replace(name + ".", 60, "TXT", " ".join(f'"{value[i:i + 255]}"' for i in range(0, len(value), 255)))
    assert dns.query.tcp(update, DNS_HOST, port=DNS_PORT, timeout=5).rcode() == dns.rcode.NOERROR


def dns_delete(name):
    update = dns.update.Update(ZONE, keyring=KEYRING, keyalgorithm=TSIG_ALGORITHM)
    update.delete(name + ".", "TXT")
    dns.query.tcp(update, DNS_HOST, port=DNS_PORT, timeout=5)


def secret_doc(arn, stage):
    try:
        return json.loads(sm.get_secret_value(SecretId=arn, VersionStage=stage)["SecretString"])
    except sm.exceptions.ResourceNotFoundException:
        return None


SES_IN = {}


def ses_in(region):
    """The harness's (unmetered) SES client for `region` (None: the function's own)."""
    if region is None:
        return ses
    if region not in SES_IN:
        SES_IN[region] = boto3.client("sesv2", region_name=region, aws_access_key_id="BEDTOOLS",
                                      aws_secret_access_key="testing")
    return SES_IN[region]


def ses_dkim(domain, region=None):
    return ses_in(region).get_email_identity(EmailIdentity=domain)["DkimAttributes"]


def ses_selector(domain, region=None):
    dkim = ses_dkim(domain, region)
    if dkim.get("SigningAttributesOrigin") == "EXTERNAL" and dkim.get("Tokens"):
        return dkim["Tokens"][0]
    return None


def ses_model(method, path, body=None):
    host, port = SES_URL.split("//")[1].split(":")
    connection = http.client.HTTPConnection(host, int(port), timeout=10)
    connection.request(method, path, body=json.dumps(body) if body is not None else None,
                       headers={"Content-Type": "application/json"})
    response = connection.getresponse()
    data = response.read()
    assert response.status == 200, (path, response.status, data)
    return json.loads(data or b"null")


def record_name(selector, domain):
    return f"{selector}._domainkey.{domain}"


def key_published(domain, doc):
    return doc and doc.get("dns_value") in dns_txt(record_name(doc["selector"], domain))


class Identity:
    """A fresh SES identity and its secret."""

    def __init__(self, mode, regions=None):
        self.mode = mode
        self.domain = f"c{uuid.uuid4().hex[:10]}.{ZONE}"
        # The SES regions the secret names (None: the function's own, one region).
        self.regions = regions or [None]
        for region in self.regions:
            ses_in(region).create_email_identity(EmailIdentity=self.domain)
        body = {"identity": self.domain}
        if regions:
            body["regions"] = regions
        if mode == "route53":
            zone = r53.create_hosted_zone(Name=self.domain, CallerReference=str(uuid.uuid4()))
            self.zone_id = zone["HostedZone"]["Id"].split("/")[-1]
            body["hosted_zone_id"] = self.zone_id
        self.arn = sm.create_secret(Name=f"dkim/{self.domain}", SecretString=json.dumps(body))["ARN"]
        self.mirrored = set()

    def start_rotation(self):
        """`RotateSecret` as AWS does it: AWSPENDING staged on a new version (moto then fails to
        invoke a Lambda it does not host, which is the state Secrets Manager invokes us in)."""
        try:
            sm.rotate_secret(SecretId=self.arn, RotationLambdaARN=FAKE_LAMBDA,
                             RotationRules={"AutomaticallyAfterDays": 90})
        except Exception:
            pass
        stages = sm.describe_secret(SecretId=self.arn)["VersionIdsToStages"]
        return next(v for v, s in stages.items() if "AWSPENDING" in s and "AWSCURRENT" not in s)

    def serve_route53(self):
        """Route 53 serves what was changed: mirror the zone's TXT records into knot."""
        if self.mode != "route53":
            return
        listed = r53.list_resource_record_sets(HostedZoneId=self.zone_id)["ResourceRecordSets"]
        names = set()
        for rrset in listed:
            if rrset["Type"] != "TXT":
                continue
            name = rrset["Name"].rstrip(".")
            value = "".join(re.findall(r'"((?:[^"\\]|\\.)*)"', rrset["ResourceRecords"][0]["Value"]))
            dns_set(name, value)
            names.add(name)
        for gone in self.mirrored - names:
            dns_delete(gone)
        self.mirrored = names

    def act_as_person(self):
        """Hint mode: a person publishes the pending key's record as the log told them."""
        if self.mode != "hint":
            return
        pending = secret_doc(self.arn, "AWSPENDING")
        if pending and pending.get("selector") and not key_published(self.domain, pending):
            dns_set(pending["dns_name"], pending["dns_value"])

    def state(self):
        """The end state with selectors and times replaced by their roles."""
        current = secret_doc(self.arn, "AWSCURRENT")
        roles = {}
        if current.get("previous_selector"):
            roles[current["previous_selector"]] = "<previous>"
        roles[current["selector"]] = "<current>"
        role = lambda s: roles.get(s, "<other>" if s else s)
        described = sm.describe_secret(SecretId=self.arn)
        labels = sorted(sorted(s) for s in described["VersionIdsToStages"].values() if s)
        tags = {}
        for tag in described.get("Tags", []):
            key, value = tag["Key"], tag["Value"]
            if not key.startswith(TAG_PREFIX):
                continue
            if key.endswith("-at"):
                value = "<time>" if value else ""
            elif key.endswith("adopted-from"):
                pass
            else:
                value = " ".join(role(v) for v in value.split()) if value else ""
            tags[key] = value
        records = {}
        for selector, name in roles.items():
            values = dns_txt(record_name(selector, self.domain))
            records[name] = ("published" if current["selector"] == selector and current["dns_value"] in values
                             else "revoked" if values == ["v=DKIM1; k=rsa; p="]
                             else "present" if values else "absent")
        return {
            "labels": labels,
            "current": {k: role(current.get(k)) for k in ("selector", "previous_selector")},
            "key_bits": current.get("key_bits"),
            "tags": tags,
            "ses": [{"origin": dkim.get("SigningAttributesOrigin"),
                     "selector": role(ses_selector(self.domain, region)),
                     "status": dkim.get("Status")}
                    for region in self.regions for dkim in [ses_dkim(self.domain, region)]],
            "dns": records,
        }

    def ses_check(self):
        """SES looks at DNS now, in every region of the identity."""
        for region in self.regions:
            ses_model("POST", "/_model/check", {"identity": self.domain, "region": region or "us-east-1"})

    def check_invariants(self, where):
        for region in self.regions:
            selector = ses_selector(self.domain, region)
            if selector:
                name = record_name(selector, self.domain)
                assert dns_txt(name), \
                    f"{where}: SES ({region or 'home'}) signs with {selector} but DNS does not serve {name}"
        current = secret_doc(self.arn, "AWSCURRENT") or {}
        previous = current.get("previous_selector")
        verified = all(ses_dkim(self.domain, r).get("Status") == "SUCCESS" for r in self.regions)
        if previous and not verified:
            assert dns_txt(record_name(previous, self.domain)), \
                f"{where}: the previous record {previous} is gone before SES verified the current one"


# ---- scenarios --------------------------------------------------------------------------------

def function_env(mode, proxies):
    aws_proxy, ses_proxy, dns_proxy_address = proxies
    env = dict(ENV)
    env.update({
        "AWS_ENDPOINT_URL_SECRETS_MANAGER": aws_proxy,
        "AWS_ENDPOINT_URL_ROUTE_53": aws_proxy,
        "AWS_ENDPOINT_URL_SESV2": ses_proxy,
        "AWS_LAMBDA_FUNCTION_NAME": "ses-dkim-rotator", "AWS_LAMBDA_FUNCTION_MEMORY_SIZE": "256",
        "AWS_LAMBDA_FUNCTION_VERSION": "1", "AWS_LAMBDA_LOG_FORMAT": "JSON",
        "DKIM_ALLOWED_IDENTITIES": "*",
        "DKIM_DNS_PUBLISHER": mode,
        "DKIM_DNS_SERVERS": dns_proxy_address,
        "DKIM_DNS_VERIFY_INTERVAL_SECONDS": "1",
        "DKIM_OLD_KEY_GRACE_DAYS": "0",
        "DKIM_ADOPT_EASY_DKIM": "true",
        # The bed's quota scale (scripts/testbed.sh): SES's 1 request/s times the factor.
        "DKIM_SES_REQUESTS_PER_SECOND": ENV.get("DKIM_TEST_QUOTA_SCALE", "10"),
    })
    if mode == "rfc2136":
        env.update({"DKIM_DNS_UPDATE_SERVER": dns_proxy_address, "DKIM_DNS_ZONE": ZONE,
                    "DKIM_DNS_TSIG_SECRET_ID": TSIG_SECRET_ID})
    return env


STEPS = ("createSecret", "setSecret", "testSecret", "finishSecret")


def step_event(identity, step, token):
    return {"Step": step, "SecretId": identity.arn, "ClientRequestToken": token}


class Propagation:
    """Route 53 serving its changes while the function runs (a scheduled run publishes and then
    looks in DNS within one invocation): the zone mirrored into knot every 0.2 s."""

    def __init__(self, identity):
        self.identity, self.stop = identity, threading.Event()
        self.thread = threading.Thread(target=self.run, daemon=True)

    def run(self):
        while not self.stop.wait(0.2):
            try:
                self.identity.serve_route53()
            except Exception:  # a record changing under the mirror: the next turn catches up
                pass

    def __enter__(self):
        if self.identity.mode == "route53":
            self.thread.start()
        return self

    def __exit__(self, *exc):
        self.stop.set()
        if self.thread.is_alive():
            self.thread.join()


def run_until_done(binary, env, identity, event, kill_after, counted):
    """Invokes `event`; when the process is killed, invokes it again (as the caller retries)
    with no crash armed. `counted` collects the calls of the crash-armed attempt series."""
    if "Step" not in event:
        with Propagation(identity):
            return invoke_until_done(binary, env, identity, event, kill_after, counted)
    return invoke_until_done(binary, env, identity, event, kill_after, counted)


def invoke_until_done(binary, env, identity, event, kill_after, counted):
    """One event invoked until it ends without a crash (see `run_until_done`)."""
    kind, body, calls = invoke(binary, env, event, kill_after)
    counted.extend(calls)
    identity.check_invariants(f"after {event.get('Step', 'scheduled run')} (crash point {kill_after})")
    crashed = kind == "killed"
    while kind == "killed":
        identity.serve_route53()
        kind, body, _ = invoke(binary, env, event)
        identity.check_invariants(f"after the retry of {event.get('Step', 'scheduled run')}")
    if kind != "ok":
        raise AssertionError(f"{event}: {body}")
    identity.serve_route53()
    return body, crashed


def first_key(binary, env, identity):
    """A first rotation with no crash, verified by SES: the key the crash rotation replaces."""
    token = identity.start_rotation()
    for step in STEPS:
        run_until_done(binary, env, identity, step_event(identity, step, token), None, [])
        if step == "setSecret":
            identity.act_as_person()
    identity.ses_check()
    assert all(ses_dkim(identity.domain, r)["Status"] == "SUCCESS" for r in identity.regions)


def rotation_scenario(binary, env, identity, crash_at):
    """Secrets Manager's four steps, one crash after call `crash_at` (counted from the first)."""
    first_key(binary, env, identity)
    token = identity.start_rotation()
    counted, remaining = [], crash_at
    for step in STEPS:
        before = len(counted)
        _, crashed = run_until_done(binary, env, identity, step_event(identity, step, token), remaining, counted)
        if remaining is not None:
            remaining = None if crashed else remaining - (len(counted) - before)
        if step == "setSecret":
            identity.act_as_person()
    return counted


def run_cli_until_done(cli, env, args, kill_after, counted):
    """The ops CLI as an operator runs it: when the process is killed, run again, unarmed."""
    while True:
        process = subprocess.Popen([cli, *args], env=env, stdout=subprocess.DEVNULL,
                                   stderr=subprocess.PIPE)
        PROXY.arm(process.pid, kill_after)
        _, stderr = process.communicate(timeout=120)
        counted.extend(PROXY.calls)
        if not PROXY.killed:
            if process.returncode != 0:
                raise AssertionError(f"{args}: exit {process.returncode}: {stderr.decode()[-2000:]}")
            return
        kill_after = None


def abort_scenario(binary, env, identity, crash_at):
    """`dkim-rotator abort` of an unfinished rotation (its key stored), crashed after each of
    its calls and run again; then Secrets Manager rotates again and resumes the same key."""
    first_key(binary, env, identity)
    token = identity.start_rotation()
    run_until_done(binary, env, identity, step_event(identity, "createSecret", token), None, [])
    handed_out = sm.get_secret_value(SecretId=identity.arn, VersionId=token)["SecretString"]
    cli = os.path.join(os.path.dirname(binary), "dkim-rotator")
    counted = []
    run_cli_until_done(cli, env, ["abort", "--secret-id", identity.arn], crash_at, counted)
    identity.check_invariants(f"after abort (crash point {crash_at})")
    again = identity.start_rotation()
    for step in STEPS:
        run_until_done(binary, env, identity, step_event(identity, step, again), None, [])
        if step == "createSecret":
            resumed = secret_doc(identity.arn, "AWSPENDING")
            assert resumed["selector"] == json.loads(handed_out)["selector"], \
                f"crash point {crash_at}: the aborted key was not resumed"
    return counted


def scheduled_scenario(binary, env, identity, crash_at):
    """The scheduled lifecycle: rotate a due key; SES verifies; confirm; retire; idle."""
    # The first key by the schedule too (Secrets Manager rotation stays off, so the schedule
    # rotates): rotated, verified by SES, confirmed.
    event = {"secret_ids": [identity.arn]}
    run_until_done(binary, env, identity, event, None, [])
    identity.ses_check()
    run_until_done(binary, env, identity, event, None, [])
    # The key was made 100 days ago (the same key, re-stored with an older creation time).
    doc = secret_doc(identity.arn, "AWSCURRENT")
    doc["created_at"] = (datetime.now(timezone.utc) - timedelta(days=100)).strftime("%Y-%m-%dT%H:%M:%SZ")
    old = sm.get_secret_value(SecretId=identity.arn, VersionStage="AWSCURRENT")["VersionId"]
    new = sm.put_secret_value(SecretId=identity.arn, SecretString=json.dumps(doc), VersionStages=["backdated"])["VersionId"]
    sm.update_secret_version_stage(SecretId=identity.arn, VersionStage="AWSCURRENT", MoveToVersionId=new,
                                   RemoveFromVersionId=old)
    counted, remaining = [], crash_at
    actions = []
    for run in range(4):
        before = len(counted)
        body, crashed = run_until_done(binary, env, identity, event, remaining, counted)
        actions.append(body["identities"][0]["action"])
        if ENV.get("CRASH_HARNESS_DEBUG"):
            print(json.dumps(body), file=sys.stderr)
        if remaining is not None:
            remaining = None if crashed else remaining - (len(counted) - before)
        if run == 0:
            identity.ses_check()
    return counted, actions


def rollback_scenario(binary, env, identity, crash_at):
    """The watcher's rollback: SES rejects (FAILED) a second key, and a scheduled run puts the
    first back — DNS check, SES put-back, tags, AWSCURRENT moved back — crashed after each call;
    then a run that finds SES verifying the first key again."""
    event = {"secret_ids": [identity.arn]}
    run_until_done(binary, env, identity, event, None, [])
    identity.ses_check()
    run_until_done(binary, env, identity, event, None, [])
    run_until_done(binary, env, identity, dict(event, force=True), None, [])
    ses_model("POST", "/_model/status", {"identity": identity.domain, "status": "FAILED"})
    counted, remaining, actions = [], crash_at, []
    for _ in range(2):
        before = len(counted)
        body, crashed = run_until_done(binary, env, identity, event, remaining, counted)
        actions.append(body["identities"][0]["action"])
        if remaining is not None:
            remaining = None if crashed else remaining - (len(counted) - before)
    return counted, actions


def queue_scenario(binary, env, crash_at):
    """Queue mode: the planner sends one message per identity; a worker takes the three as one
    SQS batch and is killed after call `crash_at`; the messages it did not delete come back (the
    visibility timeout, here 0, ran out) and the next worker finishes them. Nothing is lost."""
    sqs = boto3.client("sqs")
    queue_url = sqs.create_queue(QueueName=f"crash-{uuid.uuid4().hex[:12]}")["QueueUrl"]
    env = dict(env, DKIM_WORK_QUEUE_URL=queue_url)
    identities = [Identity("rfc2136") for _ in range(3)]
    kind, body, _ = invoke(binary, env, {"secret_ids": [i.arn for i in identities]})
    assert kind == "ok" and body["queued"] == 3, body
    counted, remaining, attempts = [], crash_at, 0
    while attempts < 10:
        attempts += 1
        messages = []
        for _ in range(5):
            got = sqs.receive_message(QueueUrl=queue_url, MaxNumberOfMessages=10, VisibilityTimeout=0)
            messages += [m for m in got.get("Messages", []) if m["MessageId"] not in {x["MessageId"] for x in messages}]
            if len(messages) >= 3:
                break
        if not messages:
            break
        event = {"Records": [{
            "messageId": m["MessageId"], "receiptHandle": m["ReceiptHandle"], "body": m["Body"],
            "attributes": {}, "messageAttributes": {}, "md5OfBody": m["MD5OfBody"], "eventSource": "aws:sqs",
            "eventSourceARN": "arn:aws:sqs:us-east-1:123456789012:crash", "awsRegion": "us-east-1",
        } for m in messages]}
        kind, body, calls = invoke(binary, env, event, remaining)
        if attempts == 1:
            counted.extend(calls)  # the calls of the first batch: the crash points
        remaining = None
        for identity in identities:
            identity.check_invariants(f"after a worker batch (crash point {crash_at})")
        if kind == "killed":
            continue  # nothing deleted: every message of the batch comes back
        assert kind == "ok", body
        failed = {f["itemIdentifier"] for f in body["batchItemFailures"]}
        for m in messages:
            if m["MessageId"] not in failed:
                sqs.delete_message(QueueUrl=queue_url, ReceiptHandle=m["ReceiptHandle"])
    depth = int(sqs.get_queue_attributes(QueueUrl=queue_url, AttributeNames=["ApproximateNumberOfMessages"])
                ["Attributes"]["ApproximateNumberOfMessages"])
    assert depth == 0, f"{depth} messages left on the queue"
    return [i.state() for i in identities], counted


SCENARIOS = ("rfc2136", "route53", "hint", "two-regions", "abort", "scheduled",
             "scheduled-route53", "rollback", "queue")
# The DNS mode of the scenarios not named after one.
SCENARIO_MODES = {"scheduled": "rfc2136", "queue": "rfc2136", "scheduled-route53": "route53",
                  "rollback": "rfc2136", "two-regions": "rfc2136", "abort": "rfc2136"}
# The SES regions of a scenario's identity (default: the function's own).
SCENARIO_REGIONS = {"two-regions": ["us-east-1", "eu-west-1"]}
# What the uninterrupted run's crash-armed scheduled runs report, in order.
EXPECTED_ACTIONS = {
    "scheduled": ["rotated", "confirmed", "retired", "skipped"],
    "scheduled-route53": ["rotated", "confirmed", "retired", "skipped"],
    "rollback": ["rolled_back", "pending"],
}


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("binary")
    parser.add_argument("--scenario", action="append",
                        choices=SCENARIOS)
    parser.add_argument("--points", help="comma list of crash points (default: every call)")
    args = parser.parse_args()
    scenarios = args.scenario or list(SCENARIOS)

    sm.create_secret(Name=TSIG_SECRET_ID, SecretString=json.dumps({
        "name": ENV["DKIM_TEST_TSIG_NAME"], "algorithm": TSIG_ALGORITHM, "secret": ENV["DKIM_TEST_TSIG_SECRET"]}))
    proxies = (http_proxy(MOTO), http_proxy(SES_URL), dns_proxy())
    failures = 0
    for scenario in scenarios:
        mode = SCENARIO_MODES.get(scenario, scenario)
        env = function_env(mode, proxies)
        started = time.monotonic()

        def run(crash_at):
            if scenario == "queue":
                states, calls = queue_scenario(args.binary, env, crash_at)
                return states, calls, None
            identity = Identity(mode, SCENARIO_REGIONS.get(scenario))
            if scenario in ("scheduled", "scheduled-route53"):
                calls, actions = scheduled_scenario(args.binary, env, identity, crash_at)
            elif scenario == "rollback":
                calls, actions = rollback_scenario(args.binary, env, identity, crash_at)
            elif scenario == "abort":
                calls, actions = abort_scenario(args.binary, env, identity, crash_at), None
            else:
                calls, actions = rotation_scenario(args.binary, env, identity, crash_at), None
            return identity.state(), calls, actions

        reference, calls, actions = run(None)
        if actions is not None:
            assert actions == EXPECTED_ACTIONS[scenario], (scenario, actions)
        every = range(1, len(calls) + 1)
        if scenario == "queue":
            every = range(2, len(calls) + 1, 3)  # mid-batch points across the three identities
        points = [int(p) for p in args.points.split(",")] if args.points else every
        bad = []
        for point in points:
            state, _, _ = run(point)
            if state != reference:
                bad.append(point)
                print(f"  crash after call {point} ({calls[point - 1]}): end state differs\n"
                      f"    reference {json.dumps(reference, sort_keys=True)}\n"
                      f"    got       {json.dumps(state, sort_keys=True)}", file=sys.stderr)
        failures += len(bad)
        print(f"crash harness [{scenario}]: {len(calls)} external calls; {len(list(points)) - len(bad)}/"
              f"{len(list(points))} SIGKILL points end as the uninterrupted run "
              f"({time.monotonic() - started:.0f} s)")
        print(f"    calls: {', '.join(calls)}")
    sys.exit(1 if failures else 0)


if __name__ == "__main__":
    main()
