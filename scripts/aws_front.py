#!/usr/bin/env python3
"""AWS's quotas for Route 53 and Secrets Manager, in front of moto, for the ses-dkim-rotator test bed.

    $VENV/bin/python scripts/aws_front.py --port PORT --upstream http://127.0.0.1:MOTOPORT \
        [--scale FACTOR] [--unmetered-key KEY]...

moto answers every request at once and never refuses one for its rate; AWS does both. This
server forwards each request to moto unchanged and adds what AWS does and moto does not:

Route 53 (REST-XML, paths under /2013-04-01/), "Quotas" in the Route 53 Developer Guide:
  - every request of an account shares one budget, --route53-rate per second (AWS: 5); over
    it the answer is HTTP 400 `Throttling` "Rate exceeded", as Route 53 sends it;
  - a ChangeResourceRecordSets to a zone that is still processing an earlier one (for
    --zone-busy seconds after it was accepted; AWS does not publish how long) is refused with
    HTTP 400 `PriorRequestNotComplete`;
  - an accepted change is `PENDING` (in its ChangeResourceRecordSets answer and in GetChange)
    for --insync-after seconds, then `INSYNC` ("Checking the status of your change": usually
    within 60 seconds). moto says `INSYNC` at once, and gives every change the one id
    `C2682N5HXP0BZ4`: the front gives each accepted change an id of its own, as AWS does.
Secrets Manager (JSON 1.1, X-Amz-Target secretsmanager.*), "AWS Secrets Manager quotas", per
account and region: PutSecretValue + UpdateSecret + UpdateSecretVersionStage 50/s together,
TagResource + UntagResource 50/s, RotateSecret + CancelRotateSecret 50/s (--secrets-write-rate);
over it HTTP 400 `ThrottlingException` "Rate exceeded". Reads (GetSecretValue, DescribeSecret,
ListSecrets: thousands per second on AWS) pass unmetered.

Each budget is a token bucket one second deep (AWS does not publish the depth). --scale
multiplies every rate and divides every duration (the bed runs AWS's quotas ten times faster).
A request signed with an access key named by --unmetered-key (the bed's own set-up and checks)
is not held to any rate; zone-busy and PENDING apply to it too, as they are the zone's state.

Control API (JSON, no auth): GET /_front/state -> what each budget refused and admitted, the
PriorRequestNotComplete refusals, and per accepted change its zone and GetChange's answers.
Standard library only.
"""

from __future__ import annotations

import argparse
import http.client
import json
import re
import sys
import threading
import time
import uuid
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import urlsplit

CREDENTIAL_RE = re.compile(r"Credential=([^/,\s]+)/\d{8}/([^/,\s]+)/[^/,\s]+/aws4_request")
ROUTE53_PREFIX = "/2013-04-01/"
ROUTE53_NS = "https://route53.amazonaws.com/doc/2013-04-01/"
CHANGE_RRSETS_RE = re.compile(r"^/2013-04-01/hostedzone/([^/]+)/rrset/?$")
GET_CHANGE_RE = re.compile(r"^/2013-04-01/change/([^/]+)$")
CHANGE_ID_RE = re.compile(rb"<Id>(?:/change/)?([^<]+)</Id>")

# Secrets Manager's write-side budgets (each 50/s per account and region on AWS).
SECRETS_BUDGETS = {
    "PutSecretValue": "secret-value-writes",
    "UpdateSecret": "secret-value-writes",
    "UpdateSecretVersionStage": "secret-value-writes",
    "TagResource": "tags",
    "UntagResource": "tags",
    "RotateSecret": "rotation",
    "CancelRotateSecret": "rotation",
}


def log(line: str) -> None:
    print(time.strftime("%H:%M:%S") + " aws_front " + line, file=sys.stderr, flush=True)


class Budget:
    """One request budget: a token bucket refilled continuously, one second deep."""

    def __init__(self, rate: float):
        self.rate = rate
        self.depth = max(rate, 1.0)
        self.tokens = self.depth
        self.counted = time.monotonic()
        self.admitted = 0
        self.refused = 0

    def take(self, now: float) -> bool:
        if self.rate <= 0:
            self.admitted += 1
            return True
        self.tokens = min(self.depth, self.tokens + (now - self.counted) * self.rate)
        self.counted = now
        if self.tokens < 1.0:
            self.refused += 1
            return False
        self.tokens -= 1.0
        self.admitted += 1
        return True


class Front:
    """Every budget, busy zone and pending change the front keeps."""

    def __init__(self, args):
        self.route53_rate = args.route53_rate * args.scale
        self.secrets_rate = args.secrets_write_rate * args.scale
        self.zone_busy = args.zone_busy / args.scale
        self.insync_after = args.insync_after / args.scale
        self.unmetered = set(args.unmetered_key)
        self.lock = threading.Lock()
        self.budgets: dict[str, Budget] = {}
        self.zone_free_at: dict[str, float] = {}
        self.change_insync_at: dict[str, float] = {}
        # Per change: its zone and how GetChange answered it.
        self.changes: dict[str, dict] = {}
        self.prior_request_refusals = 0

    def admit(self, key: str, budget: str, rate: float, account: str) -> bool:
        if account in self.unmetered:
            return True
        with self.lock:
            return self.budgets.setdefault(f"{key}/{budget}", Budget(rate)).take(time.monotonic())

    def claim_zone(self, zone: str) -> bool:
        """Whether `zone` may take a change now (and marks it busy if so)."""
        now = time.monotonic()
        with self.lock:
            if self.zone_free_at.get(zone, 0.0) > now:
                self.prior_request_refusals += 1
                return False
            self.zone_free_at[zone] = now + self.zone_busy
            return True

    def release_zone(self, zone: str) -> None:
        """moto refused the change: the zone is not busy with it."""
        with self.lock:
            self.zone_free_at.pop(zone, None)

    def accepted(self, change_id: str, zone: str) -> None:
        with self.lock:
            self.change_insync_at[change_id] = time.monotonic() + self.insync_after
            self.changes[change_id] = {"zone": zone, "PENDING": 0, "INSYNC": 0}

    def get_change(self, change_id: str) -> bool:
        """Whether `change_id` is still PENDING; counts the answer."""
        with self.lock:
            pending = self.change_insync_at.get(change_id, 0.0) > time.monotonic()
            if change_id in self.changes:
                self.changes[change_id]["PENDING" if pending else "INSYNC"] += 1
            return pending

    def state(self) -> dict:
        with self.lock:
            return {
                "budgets": {k: {"rate": b.rate, "admitted": b.admitted, "refused": b.refused}
                            for k, b in sorted(self.budgets.items())},
                "prior_request_not_complete": self.prior_request_refusals,
                "changes": dict(self.changes),
                "zone_busy_seconds": self.zone_busy,
                "insync_after_seconds": self.insync_after,
            }


def route53_error(code: str, message: str) -> tuple[int, dict, bytes]:
    body = (f'<?xml version="1.0"?>\n<ErrorResponse xmlns="{ROUTE53_NS}"><Error>'
            f"<Type>Sender</Type><Code>{code}</Code><Message>{message}</Message></Error>"
            f"<RequestId>aws-front-{time.monotonic_ns()}</RequestId></ErrorResponse>")
    return 400, {"Content-Type": "text/xml"}, body.encode()


def secrets_error(code: str, message: str) -> tuple[int, dict, bytes]:
    body = json.dumps({"__type": code, "message": message}).encode()
    return 400, {"Content-Type": "application/x-amz-json-1.1", "x-amzn-ErrorType": code}, body


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    disable_nagle_algorithm = True
    server_version = "aws_front"
    sys_version = ""
    front: Front = None  # set in main
    upstream: tuple[str, int] = ("127.0.0.1", 0)
    local = threading.local()

    def log_message(self, format, *args):  # noqa: A002 - silence the default access log
        pass

    def do_GET(self):
        self.handle_request()

    def do_POST(self):
        self.handle_request()

    def do_PUT(self):
        self.handle_request()

    def do_DELETE(self):
        self.handle_request()

    def read_body(self) -> bytes:
        if "chunked" in self.headers.get("Transfer-Encoding", "").lower():
            chunks = []
            while True:
                size = int(self.rfile.readline().split(b";")[0].strip() or b"0", 16)
                if size == 0:
                    while self.rfile.readline() not in (b"\r\n", b"\n", b""):
                        pass
                    break
                chunks.append(self.rfile.read(size))
                self.rfile.readline()
            return b"".join(chunks)
        length = int(self.headers.get("Content-Length") or 0)
        return self.rfile.read(length) if length else b""

    def caller(self) -> tuple[str, str]:
        m = CREDENTIAL_RE.search(self.headers.get("Authorization", ""))
        return (m.group(1), m.group(2)) if m else ("anonymous", "us-east-1")

    def forward(self, body: bytes) -> tuple[int, dict, bytes]:
        headers = {k: v for k, v in self.headers.items()
                   if k.lower() not in ("transfer-encoding", "content-length", "connection")}
        headers["Content-Length"] = str(len(body))
        for attempt in (1, 2):
            conn = getattr(self.local, "conn", None)
            if conn is None:
                conn = http.client.HTTPConnection(*self.upstream, timeout=60)
                self.local.conn = conn
            try:
                conn.request(self.command, self.path, body=body, headers=headers)
                response = conn.getresponse()
                data = response.read()
                out = {k: v for k, v in response.getheaders()
                       if k.lower() not in ("transfer-encoding", "content-length", "connection")}
                return response.status, out, data
            except (http.client.HTTPException, OSError):
                conn.close()
                self.local.conn = None
                if attempt == 2:
                    raise
        raise AssertionError("unreachable")

    def route53(self, body: bytes, account: str) -> tuple[int, dict, bytes, str]:
        path = urlsplit(self.path).path
        change = CHANGE_RRSETS_RE.match(path) if self.command == "POST" else None
        operation = "ChangeResourceRecordSets" if change else self.command + " " + path
        if not self.front.admit(account, "route53", self.front.route53_rate, account):
            return (*route53_error("Throttling", "Rate exceeded"), operation + " Throttling")
        if change:
            zone = change.group(1)
            if not self.front.claim_zone(zone):
                return (*route53_error(
                    "PriorRequestNotComplete",
                    "The request was rejected because Route 53 was still processing a prior "
                    "request."), operation + " PriorRequestNotComplete")
            status, headers, data = self.forward(body)
            if status != 200:
                self.front.release_zone(zone)
                return status, headers, data, operation
            found = CHANGE_ID_RE.search(data)
            if found:
                change_id = "C" + uuid.uuid4().hex[:13].upper()
                self.front.accepted(change_id, zone)
                data = data.replace(found.group(1), change_id.encode())
                data = data.replace(b"<Status>INSYNC</Status>", b"<Status>PENDING</Status>")
            return status, headers, data, operation + " PENDING"
        status, headers, data = self.forward(body)
        got = GET_CHANGE_RE.match(path) if self.command == "GET" else None
        if got and status == 200 and self.front.get_change(got.group(1)):
            data = data.replace(b"<Status>INSYNC</Status>", b"<Status>PENDING</Status>")
            return status, headers, data, "GetChange PENDING"
        return status, headers, data, ("GetChange" if got else operation)

    def secrets(self, body: bytes, account: str, region: str, target: str):
        operation = target.split(".", 1)[1]
        budget = SECRETS_BUDGETS.get(operation)
        if budget and not self.front.admit(f"{account}/{region}", budget,
                                           self.front.secrets_rate, account):
            return (*secrets_error("ThrottlingException", "Rate exceeded"),
                    operation + " ThrottlingException")
        return (*self.forward(body), operation)

    def handle_request(self):
        started = time.monotonic()
        body = self.read_body()
        account, region = self.caller()
        path = urlsplit(self.path).path
        target = self.headers.get("X-Amz-Target", "")
        try:
            if path == "/_front/state":
                status, headers, data = (200, {"Content-Type": "application/json"},
                                         json.dumps(self.front.state()).encode())
                note = "state"
            elif path.startswith(ROUTE53_PREFIX):
                status, headers, data, note = self.route53(body, account)
            elif target.startswith("secretsmanager."):
                status, headers, data, note = self.secrets(body, account, region, target)
            else:
                status, headers, data = self.forward(body)
                note = target or self.command + " " + path
        except Exception as exc:  # noqa: BLE001 - the bed must see why, not a dropped socket
            status, headers, data = 502, {"Content-Type": "text/plain"}, f"aws_front: {exc}".encode()
            note = f"upstream error {exc}"
        self.send_response(status)
        for key, value in headers.items():
            self.send_header(key, value)
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)
        if status != 200 or "PENDING" in note:
            log(f"{self.command} {path} {status} {note} ({(time.monotonic() - started) * 1000:.1f} ms)")


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--port", type=int, required=True, help="TCP port on 127.0.0.1 (0: any)")
    parser.add_argument("--upstream", required=True, help="moto's URL, http://host:port")
    parser.add_argument("--scale", type=float, default=1.0,
                        help="multiplies every rate and divides every duration (default 1: AWS's)")
    parser.add_argument("--route53-rate", type=float, default=5.0,
                        help="Route 53 requests per second per account (AWS: 5; 0: no quota)")
    parser.add_argument("--zone-busy", type=float, default=1.0,
                        help="seconds a zone refuses another change after accepting one")
    parser.add_argument("--insync-after", type=float, default=40.0,
                        help="seconds an accepted change stays PENDING (AWS: usually < 60)")
    parser.add_argument("--secrets-write-rate", type=float, default=50.0,
                        help="each Secrets Manager write budget, per second per region (AWS: 50)")
    parser.add_argument("--unmetered-key", action="append", default=[],
                        help="an access key id no rate applies to (the bed's own calls)")
    args = parser.parse_args(argv)
    if args.scale <= 0 or min(args.route53_rate, args.zone_busy, args.insync_after,
                              args.secrets_write_rate) < 0:
        parser.error("--scale must be positive and no rate or duration negative")
    upstream = urlsplit(args.upstream)
    Handler.upstream = (upstream.hostname or "127.0.0.1", upstream.port or 80)
    Handler.front = Front(args)
    server = ThreadingHTTPServer(("127.0.0.1", args.port), Handler)
    server.daemon_threads = True
    host, port = server.server_address[:2]
    log(f"listening on http://{host}:{port} -> {args.upstream} (scale {args.scale:g}: Route 53 "
        f"{Handler.front.route53_rate:g}/s, zone busy {Handler.front.zone_busy:g} s, PENDING "
        f"{Handler.front.insync_after:g} s, Secrets Manager writes {Handler.front.secrets_rate:g}/s)")
    try:
        server.serve_forever(poll_interval=0.2)
    except KeyboardInterrupt:
        pass
    finally:
        server.server_close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
