#!/usr/bin/env python3
"""Self-test of scripts/ses_model.py against a real DNS server (knotd), without cargo.

    $VENV/bin/python scripts/ses_model_selftest.py

Starts knotd (zone dkim.test, RFC 2136 updates signed with a TSIG key made for this run) and
the model on free loopback ports in a temporary directory, publishes and removes TXT records
with knsupdate, makes keys with openssl, and drives the model over HTTP with urllib. Needs
knotd, knsupdate and openssl on PATH: if one is missing it fails (exit 2) saying so; it never
skips a check. Exit 0 when every check passed, 1 otherwise.
"""

from __future__ import annotations

import base64
import json
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
import urllib.error
import urllib.request

try:
    import dns.exception
    import dns.flags
    import dns.message
    import dns.query
    import dns.rdatatype
except ImportError:
    sys.exit("ses_model_selftest: FAILED: dnspython missing; run me with the test-bed "
             "virtualenv's python ($VENV/bin/python)")

HERE = os.path.dirname(os.path.abspath(__file__))
MODEL = os.path.join(HERE, "ses_model.py")
ZONE = "dkim.test"
TSIG_NAME = "selftest-key."

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


def section(title: str) -> None:
    print(f"== {title}")


def free_port() -> int:
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    return port


def wait_port(port: int, proc: subprocess.Popen, name: str, timeout: float = 15) -> float:
    start = time.monotonic()
    while time.monotonic() - start < timeout:
        if proc.poll() is not None:
            raise SystemExit(f"{name} exited during start-up (status {proc.returncode})")
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.2):
                return time.monotonic() - start
        except OSError:
            time.sleep(0.02)
    raise SystemExit(f"{name} did not listen on 127.0.0.1:{port} within {timeout} s")


# ---- tools ----------------------------------------------------------------------------------


def require_tools() -> None:
    try:
        import dkim  # noqa: F401  (the model needs it)
    except ImportError:
        print("ses_model_selftest: FAILED: run me with the test-bed virtualenv's python "
              "($VENV/bin/python, which has dnspython and dkimpy)", file=sys.stderr)
        sys.exit(2)
    missing = [t for t in ("knotd", "knsupdate", "openssl") if shutil.which(t) is None]
    if missing:
        print(
            f"ses_model_selftest: FAILED: required tool(s) not found on PATH: {', '.join(missing)}. "
            "The DNS checks need a real DNS server (knotd, knsupdate from knot / knot-dnsutils) "
            "and keys from openssl; nothing is skipped.",
            file=sys.stderr,
        )
        sys.exit(2)


def openssl(*args: str, stdin: bytes | None = None) -> bytes:
    out = subprocess.run(["openssl", *args], input=stdin, capture_output=True)
    if out.returncode != 0:
        raise SystemExit(f"openssl {' '.join(args)} failed: {out.stderr.decode()}")
    return out.stdout


class Key:
    """An RSA key from openssl: PKCS#1 and PKCS#8 DER base64, SPKI base64, PEM text."""

    def __init__(self, bits: int):
        self.bits = bits
        self.pem = openssl("genrsa", str(bits))
        self.pkcs1 = base64.b64encode(
            openssl("rsa", "-outform", "DER", "-traditional", stdin=self.pem)
        ).decode()
        self.pkcs8 = base64.b64encode(
            openssl("pkcs8", "-topk8", "-nocrypt", "-outform", "DER", stdin=self.pem)
        ).decode()
        self.spki = base64.b64encode(
            openssl("rsa", "-pubout", "-outform", "DER", stdin=self.pem)
        ).decode()

    def txt(self) -> str:
        return f"v=DKIM1; k=rsa; p={self.spki}"


# ---- knot -----------------------------------------------------------------------------------


class Knot:
    def __init__(self, state: str):
        self.port = free_port()
        self.secret = base64.b64encode(os.urandom(32)).decode()
        os.makedirs(f"{state}/knot/zones")
        os.makedirs(f"{state}/knot/db")
        with open(f"{state}/knot/zones/{ZONE}.zone", "w") as f:
            f.write(
                f"$ORIGIN {ZONE}.\n$TTL 60\n@ SOA ns1 hostmaster 1 60 60 3600 60\n"
                "@ NS ns1\nns1 A 127.0.0.1\n"
            )
        with open(f"{state}/knot/knot.conf", "w") as f:
            f.write(
                f"""server:
    rundir: "{state}/knot"
    listen: 127.0.0.1@{self.port}
log:
  - target: stderr
    any: warning
database:
    storage: "{state}/knot/db"
key:
  - id: {TSIG_NAME}
    algorithm: hmac-sha256
    secret: {self.secret}
acl:
  - id: update
    key: {TSIG_NAME}
    action: update
template:
  - id: default
    storage: "{state}/knot/zones"
    file: "%s.zone"
    zonefile-sync: -1
    journal-content: changes
zone:
  - domain: {ZONE}
    acl: update
"""
            )
        self.log = open(f"{state}/knot.log", "w")
        self.proc = subprocess.Popen(
            ["knotd", "-c", f"{state}/knot/knot.conf"], stdout=self.log, stderr=self.log
        )
        wait_port(self.port, self.proc, "knotd")
        # The zone may load a moment after the socket opens.
        query = dns.message.make_query(ZONE + ".", dns.rdatatype.SOA)
        for _ in range(100):
            try:
                if dns.query.udp(query, "127.0.0.1", timeout=0.5, port=self.port).answer:
                    break
            except (OSError, dns.exception.DNSException):
                pass
            time.sleep(0.05)
        else:
            raise SystemExit(f"knotd did not serve zone {ZONE} within 5 s")

    def update(self, *lines: str) -> None:
        script = (
            f"server 127.0.0.1 {self.port}\n"
            f"key hmac-sha256:{TSIG_NAME} {self.secret}\n"
            f"zone {ZONE}.\n" + "".join(f"{line}\n" for line in lines) + "send\nquit\n"
        )
        out = subprocess.run(["knsupdate"], input=script, capture_output=True, text=True)
        if out.returncode != 0:
            raise SystemExit(f"knsupdate failed: {out.stderr}")

    def add_txt(self, name: str, text: str) -> None:
        # TXT strings are at most 255 bytes: split long records into several strings.
        strings = " ".join(f'"{text[i:i + 200]}"' for i in range(0, len(text), 200))
        self.update(f"update add {name}. 60 TXT {strings}")

    def delete(self, name: str) -> None:
        self.update(f"update delete {name}. TXT")

    def stop(self) -> None:
        self.proc.terminate()
        try:
            self.proc.wait(5)
        except subprocess.TimeoutExpired:
            self.proc.kill()
        self.log.close()


# ---- the model ------------------------------------------------------------------------------


class ModelProc:
    def __init__(self, dns_port: int, *extra: str):
        self.port = free_port()
        started = time.monotonic()
        self.proc = subprocess.Popen(
            [sys.executable, MODEL, "--port", str(self.port),
             "--dns-server", f"127.0.0.1:{dns_port}", *extra],
            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True,
        )
        self.lines: list[str] = []
        threading.Thread(target=self._drain, daemon=True).start()
        wait_port(self.port, self.proc, "ses_model")
        self.startup = time.monotonic() - started

    def _drain(self) -> None:
        for line in self.proc.stderr:
            self.lines.append(line)

    def call(self, method: str, path: str, body=None, region: str | None = None,
             raw: bytes | None = None, akid: str = "AKIDTESTING"):
        """(status, headers, JSON body) of one request."""
        data = raw if raw is not None else (None if body is None else json.dumps(body).encode())
        req = urllib.request.Request(f"http://127.0.0.1:{self.port}{path}", data=data,
                                     method=method)
        req.add_header("Content-Type", "application/json")
        if region is not None:
            req.add_header(
                "Authorization",
                f"AWS4-HMAC-SHA256 Credential={akid}/20261129/{region}/ses/aws4_request, "
                "SignedHeaders=host;x-amz-date, Signature=" + "0" * 64,
            )
        try:
            with urllib.request.urlopen(req, timeout=10) as resp:
                return resp.status, dict(resp.headers), json.loads(resp.read() or b"{}")
        except urllib.error.HTTPError as err:
            return err.code, dict(err.headers), json.loads(err.read() or b"{}")

    # SES operations (region from a SigV4-shaped Authorization header)
    def create(self, domain, region="us-east-1", **extra):
        return self.call("POST", "/v2/email/identities", {"EmailIdentity": domain, **extra},
                         region)

    def get(self, domain, region="us-east-1"):
        return self.call("GET", f"/v2/email/identities/{urllib.request.quote(domain)}",
                         region=region)

    def put_external(self, domain, selector, key, region="us-east-1"):
        return self.call(
            "PUT", f"/v2/email/identities/{urllib.request.quote(domain)}/dkim/signing",
            {"SigningAttributesOrigin": "EXTERNAL",
             "SigningAttributes": {"DomainSigningSelector": selector,
                                   "DomainSigningPrivateKey": key}}, region)

    def put_easy(self, domain, region="us-east-1"):
        return self.call(
            "PUT", f"/v2/email/identities/{urllib.request.quote(domain)}/dkim/signing",
            {"SigningAttributesOrigin": "AWS_SES"}, region)

    def delete(self, domain, region="us-east-1"):
        return self.call("DELETE", f"/v2/email/identities/{urllib.request.quote(domain)}",
                         region=region)

    # control
    def ctl(self, method, what, body=None):
        return self.call(method, f"/_model/{what}", body)

    def check_now(self, domain, region="us-east-1"):
        status, _, body = self.ctl("POST", "check", {"identity": domain, "region": region})
        return body.get("Status") if status == 200 else f"HTTP {status} {body}"

    def dkim(self, domain, region="us-east-1"):
        status, _, body = self.get(domain, region)
        return body.get("DkimAttributes") if status == 200 else None

    def stop(self) -> None:
        self.proc.send_signal(signal.SIGINT)
        try:
            self.proc.wait(5)
        except subprocess.TimeoutExpired:
            self.proc.kill()


def is_error(resp, status: int, code: str) -> bool:
    st, headers, body = resp
    return (st == status and headers.get("x-amzn-ErrorType") == code
            and body.get("__type") == code and isinstance(body.get("message"), str)
            and headers.get("Content-Type") == "application/json")


# ---- the checks -----------------------------------------------------------------------------


def run(knot: Knot, keys: dict) -> None:
    model = ModelProc(knot.port, "--rate", "0")
    try:
        main_checks(model, knot, keys)
    finally:
        model.stop()
    log = "".join(model.lines)
    section("log")
    check(all(k not in log for key in keys.values() for k in (key.pkcs1, key.pkcs8)),
          "no private key (PKCS#1 or PKCS#8 base64) appears in the model's log")
    check(any(" PutEmailIdentityDkimSigningAttributes " in line and "selector=s1" in line
              and "identity=a.dkim.test" in line for line in model.lines),
          "a Put is logged with its identity and selector")
    check(sum(1 for line in model.lines if re.search(r" (GET|POST|PUT|DELETE) /", line)) >= 40,
          "one log line per request")

    background_checks(knot, keys)
    quotas(knot)


def bad_length(b64: str) -> str:
    """`b64` cut to a length no base64 text can have (1 mod 4)."""
    text = b64.rstrip("=")
    while len(text) % 4 != 1:
        text = text[:-1]
    return text


def main_checks(m: ModelProc, knot: Knot, keys: dict) -> None:
    k1, k2, k1b = keys["k1024"], keys["k2048"], keys["k1024b"]
    a = "a.dkim.test"
    tok = re.compile(r"[a-z0-9]{32}")

    section("start-up")
    check(m.startup < 1.0, f"model listens within 1 s (took {m.startup:.2f} s)")

    section("CreateEmailIdentity / GetEmailIdentity: Easy DKIM shape")
    st, headers, body = m.create(a, Tags=[{"Key": "team", "Value": "mail"}])
    check(st == 200, "create -> 200", (st, body))
    d = body.get("DkimAttributes", {})
    check(body.get("IdentityType") == "DOMAIN" and body.get("VerifiedForSendingStatus") is False,
          "create: IdentityType DOMAIN, not verified for sending", body)
    check(d.get("SigningAttributesOrigin") == "AWS_SES" and d.get("Status") == "PENDING"
          and d.get("SigningEnabled") is True, "create: AWS_SES, PENDING, SigningEnabled", d)
    check(len(d.get("Tokens", [])) == 3 and all(tok.fullmatch(t) for t in d["Tokens"]),
          "create: three 32-char lowercase alnum tokens", d.get("Tokens"))
    check(headers.get("Content-Type") == "application/json" and "x-amzn-RequestId" in headers,
          "JSON content type and a request id")
    check(is_error(m.create(a), 400, "AlreadyExistsException"),
          "create again -> 400 AlreadyExistsException")
    st, _, body = m.get(a)
    d = body.get("DkimAttributes", {})
    check(st == 200 and body.get("FeedbackForwardingStatus") is True
          and body.get("VerificationStatus") == "PENDING"
          and body.get("MailFromAttributes") == {"BehaviorOnMxFailure": "USE_DEFAULT_VALUE"}
          and body.get("Policies") == {} and body.get("Tags") == [{"Key": "team", "Value": "mail"}],
          "get: full shape", body)
    check(d.get("NextSigningKeyLength") == "RSA_2048_BIT"
          and isinstance(d.get("LastKeyGenerationTimestamp"), (int, float)),
          "get: Easy DKIM key length and generation timestamp", d)
    check(m.check_now(a) == "PENDING", "check on Easy DKIM leaves it alone")

    section("PutEmailIdentityDkimSigningAttributes EXTERNAL (PKCS#1, 1024 bits)")
    name1 = f"s1._domainkey.{a}"
    st, _, body = m.put_external(a, "s1", k1.pkcs1)
    check(st == 200 and body == {"DkimStatus": "PENDING", "DkimTokens": ["s1"]},
          "put -> 200 {DkimStatus: PENDING, DkimTokens: [s1]}", (st, body))
    d = m.dkim(a)
    check(d["SigningAttributesOrigin"] == "EXTERNAL" and d["Status"] == "PENDING"
          and d["Tokens"] == ["s1"], "get: EXTERNAL, PENDING, Tokens=[selector]", d)
    check("NextSigningKeyLength" not in d, "get: no Easy DKIM key length on EXTERNAL", d)
    check(m.check_now(a) == "PENDING", "no record yet, window open -> stays PENDING")

    section("DNS: SUCCESS, TEMPORARY_FAILURE, back to SUCCESS")
    knot.add_txt(name1, k1.txt())
    check(m.check_now(a) == "SUCCESS", "record published -> check -> SUCCESS")
    st, _, body = m.get(a)
    check(body.get("VerifiedForSendingStatus") is True and body.get("VerificationStatus") == "SUCCESS",
          "get: VerifiedForSendingStatus true once SUCCESS", body)
    knot.delete(name1)
    check(m.check_now(a) == "TEMPORARY_FAILURE", "record removed -> TEMPORARY_FAILURE")
    check(m.get(a)[2].get("VerifiedForSendingStatus") is False,
          "get: not verified for sending while TEMPORARY_FAILURE")
    knot.add_txt(name1, k1.txt())
    check(m.check_now(a) == "SUCCESS", "record back -> SUCCESS")
    knot.delete(name1)

    section("DNS: FAILED after the window, and FAILED stays")
    st, _, body = m.put_external(a, "s2", k1.pkcs1)
    check(st == 200 and body.get("DkimTokens") == ["s2"], "new put (selector s2) -> 200")
    check(m.dkim(a)["Status"] == "PENDING", "a new put resets to PENDING")
    st, _, body = m.ctl("POST", "expire", {"identity": a})
    check(st == 200, "expire -> 200", body)
    check(m.check_now(a) == "FAILED", "no record + window over -> FAILED")
    knot.add_txt(f"s2._domainkey.{a}", k1.txt())
    check(m.check_now(a) == "FAILED", "FAILED stays FAILED even when the record appears")
    st, _, body = m.put_external(a, "s2", k1.pkcs1)
    check(m.check_now(a) == "SUCCESS", "the next put with the record up -> SUCCESS")
    knot.delete(f"s2._domainkey.{a}")

    section("DNS: mismatched key, two DKIM records, revoked key, bare RSAPublicKey")
    st, _, _ = m.put_external(a, "s3", k1.pkcs1)
    name3 = f"s3._domainkey.{a}"
    knot.add_txt(name3, k1b.txt())
    check(m.check_now(a) == "PENDING", "record with a different key -> not served (PENDING)")
    knot.delete(name3)
    knot.add_txt(name3, k1.txt())
    knot.add_txt(name3, k1b.txt())
    check(m.check_now(a) == "PENDING", "two DKIM records -> not served (PENDING)")
    knot.delete(name3)
    knot.add_txt(name3, "v=DKIM1; k=rsa; p=")
    check(m.check_now(a) == "PENDING", "empty p= -> not served")
    knot.delete(name3)
    # PKCS#1 RSAPublicKey inside the SPKI's BIT STRING: strip the 22-byte 1024-bit SPKI header.
    spki = base64.b64decode(k1.spki)
    bare = base64.b64encode(spki[22:]).decode()
    knot.add_txt(name3, f"v=DKIM1; k=rsa; p={bare}")
    check(m.check_now(a) == "PENDING", "bare RSAPublicKey (not SPKI) in p= -> not served")
    knot.delete(name3)
    knot.add_txt(name3, "some other TXT")
    knot.add_txt(name3, f"v=DKIM1;  k = rsa ;  p={k1.spki[:40]} {k1.spki[40:]}")
    check(m.check_now(a) == "SUCCESS",
          "one DKIM record among other TXT, with spaces in tags and p= -> SUCCESS")
    knot.delete(name3)

    section("PKCS#8 and 2048-bit keys; TXT split over several strings")
    b = "b.dkim.test"
    check(m.create(b)[0] == 200, "create b")
    st, _, body = m.put_external(b, "k8", keys["k1024"].pkcs8)
    check(st == 200 and body.get("DkimStatus") == "PENDING", "PKCS#8 1024-bit key accepted",
          (st, body))
    st, _, body = m.put_external(b, "big", k2.pkcs1)
    check(st == 200, "PKCS#1 2048-bit key accepted", (st, body))
    check(len(k2.txt()) > 255, "the 2048-bit record is longer than one TXT string")
    knot.add_txt(f"big._domainkey.{b}", k2.txt())
    check(m.check_now(b) == "SUCCESS", "2048-bit record in several strings -> SUCCESS")
    # Bigger than a 512-byte UDP answer: the model must retry over TCP.
    big = f"bigtc._domainkey.{b}"
    knot.add_txt(big, "filler " + "x" * 400)
    knot.add_txt(big, k2.txt())
    udp = dns.query.udp(dns.message.make_query(big + ".", dns.rdatatype.TXT), "127.0.0.1",
                        timeout=2, port=knot.port)
    check(bool(udp.flags & dns.flags.TC), "the UDP answer at bigtc is truncated (TC)")
    st, _, body = m.put_external(b, "bigtc", k2.pkcs1)
    check(m.check_now(b) == "SUCCESS", "truncated UDP answer -> TCP fallback -> SUCCESS")
    st, _, body = m.put_external(b, "big8", k2.pkcs8)
    check(st == 200, "PKCS#8 2048-bit key accepted", (st, body))
    knot.add_txt(f"big8._domainkey.{b}", k2.txt())
    check(m.check_now(b) == "SUCCESS", "PKCS#8 key's record -> SUCCESS")

    section("Deterministic Easy DKIM replicas and SigningEnabled")
    parent = "deed.dkim.test"
    check(m.create(parent, "eu-west-1")[0] == 200, "create the parent in eu-west-1")
    m.ctl("POST", "status", {"identity": parent, "region": "eu-west-1", "status": "SUCCESS"})
    st, _, body = m.create(parent, "us-west-2",
                           DkimSigningAttributes={"DomainSigningAttributesOrigin":
                                                  "AWS_SES_EU_WEST_1"})
    rd = body.get("DkimAttributes", {})
    check(st == 200 and rd.get("SigningAttributesOrigin") == "AWS_SES_EU_WEST_1"
          and rd.get("Status") == "SUCCESS"
          and rd.get("Tokens") == m.dkim(parent, "eu-west-1")["Tokens"],
          "a replica reports AWS_SES_<PARENT>, the parent's tokens and status", (st, body))
    st, _, body = m.create("orphan.dkim.test", "us-west-2",
                           DkimSigningAttributes={"DomainSigningAttributesOrigin":
                                                  "AWS_SES_EU_WEST_1"})
    check(st == 200 and body["DkimAttributes"]["Status"] == "FAILED",
          "a replica without a parent identity fails verification", (st, body))
    for origin in ("AWS_SES", "EXTERNAL", "AWS_SES_NOWHERE"):
        check(is_error(m.create("x.dkim.test", "us-west-2",
                                DkimSigningAttributes={"DomainSigningAttributesOrigin": origin}),
                       400, "BadRequestException"),
              f"create with DomainSigningAttributesOrigin {origin} -> 400")
    path = f"/v2/email/identities/{parent}/dkim"
    st, _, _ = m.call("PUT", path, {"SigningEnabled": False}, "us-west-2")
    check(st == 200 and m.dkim(parent, "us-west-2")["SigningEnabled"] is False,
          "PutEmailIdentityDkimAttributes SigningEnabled=false is reported")
    m.put_external(parent, "own", k1.pkcs1, region="us-west-2")
    d = m.dkim(parent, "us-west-2")
    check(d["SigningAttributesOrigin"] == "EXTERNAL" and d["SigningEnabled"] is False,
          "a put of signing attributes leaves SigningEnabled as it was", d)
    check(m.dkim(parent, "eu-west-1")["SigningEnabled"] is True
          and m.dkim(parent, "eu-west-1")["SigningAttributesOrigin"] == "AWS_SES",
          "the parent region is untouched")
    check(is_error(m.call("PUT", path, {"SigningEnabled": "no"}, "us-west-2"), 400,
                   "BadRequestException"), "SigningEnabled must be a boolean")
    for name, region in ((parent, "us-west-2"), (parent, "eu-west-1"),
                         ("orphan.dkim.test", "us-west-2")):
        m.delete(name, region)

    section("validation: 400 BadRequestException, state unchanged")
    before = m.get(a)[2]
    bad = {
        "selector starting with '-'": ("-bad", k1.pkcs1),
        "selector ending with '-'": ("bad-", k1.pkcs1),
        "selector with '_'": ("a_b", k1.pkcs1),
        "selector with '.'": ("a.b", k1.pkcs1),
        "selector with a trailing newline": ("abc\n", k1.pkcs1),
        "empty selector": ("", k1.pkcs1),
        "64-character selector": ("a" * 64, k1.pkcs1),
        "512-bit key": ("ok", keys["k512"].pkcs1),
        "512-bit PKCS#8 key": ("ok", keys["k512"].pkcs8),
        "2112-bit key": ("ok", keys["k2112"].pkcs1),
        "PEM text": ("ok", k1.pem.decode()),
        "base64 with line breaks": ("ok", "\n".join(k1.pkcs1[i:i + 64]
                                                    for i in range(0, len(k1.pkcs1), 64))),
        "empty key": ("ok", ""),
        "base64 of junk": ("ok", base64.b64encode(b"not a key at all").decode()),
        "public key (SPKI) instead of a private key": ("ok", k1.spki),
        "truncated key": ("ok", base64.b64encode(base64.b64decode(k1.pkcs1)[:-8]).decode()),
        "key with trailing bytes": ("ok", base64.b64encode(base64.b64decode(k1.pkcs1)
                                                           + b"\0\0").decode()),
        "bad base64 length": ("ok", bad_length(k1.pkcs1)),
        "20481-character key": ("ok", "A" * 20481),
        "the private key as the selector": (k1.pkcs1, k1.pkcs1),
    }
    for what, (selector, key) in bad.items():
        resp = m.put_external(a, selector, key)
        check(is_error(resp, 400, "BadRequestException"), f"{what} -> 400 BadRequestException",
              resp[:1] + (resp[2],))
    for what, body in {
        "origin missing": {"SigningAttributes": {"DomainSigningSelector": "x"}},
        "origin bogus": {"SigningAttributesOrigin": "BYO"},
        "EXTERNAL without attributes": {"SigningAttributesOrigin": "EXTERNAL"},
    }.items():
        resp = m.call("PUT", f"/v2/email/identities/{a}/dkim/signing", body, "us-east-1")
        check(is_error(resp, 400, "BadRequestException"), f"{what} -> 400", resp[2])
    resp = m.call("PUT", f"/v2/email/identities/{a}/dkim/signing", raw=b"{nope")
    check(is_error(resp, 400, "BadRequestException"), "body that is not JSON -> 400")
    check(m.get(a)[2] == before, "state unchanged after every rejected put")
    msg = m.put_external(a, "ok", keys["k512"].pkcs1)[2]["message"]
    check("512" in msg and "1024" in msg and "2048" in msg, "the key-size message names the sizes",
          msg)

    section("unknown identities and paths")
    for what, resp in {
        "get": m.get("nope.dkim.test"),
        "put": m.put_external("nope.dkim.test", "s1", k1.pkcs1),
        "put AWS_SES": m.put_easy("nope.dkim.test"),
        "delete": m.delete("nope.dkim.test"),
    }.items():
        check(is_error(resp, 404, "NotFoundException"), f"{what} unknown identity -> 404", resp)
    check(m.check_now("nope.dkim.test").startswith("HTTP 404"), "check unknown identity -> 404")
    check(m.ctl("POST", "status", {"identity": "nope.dkim.test", "status": "SUCCESS"})[0] == 404,
          "force status of unknown identity -> 404")
    resp = m.call("GET", "/v2/email/configuration-sets", region="us-east-1")
    check(resp[0] == 404 and "PutEmailIdentityDkimSigningAttributes" in resp[2].get("message", "")
          and resp[1].get("x-amzn-ErrorType") == "UnknownOperationException",
          "unmodelled operation -> 404 naming what is supported", resp[2])
    check(m.call("GET", "/_model/nothing")[0] == 404, "unknown control path -> 404")

    section("regions")
    st, _, body = m.create(a, region="eu-west-1")
    check(st == 200, "same domain in eu-west-1 is a new identity", body)
    check(m.dkim(a, "eu-west-1")["SigningAttributesOrigin"] == "AWS_SES",
          "eu-west-1 copy is Easy DKIM")
    check(m.dkim(a)["SigningAttributesOrigin"] == "EXTERNAL", "us-east-1 copy untouched")
    check(is_error(m.get(a, "us-west-2"), 404, "NotFoundException"), "absent in us-west-2")
    st, _, _ = m.put_external(a, "eu1", k1.pkcs1, region="eu-west-1")
    knot.add_txt(f"eu1._domainkey.{a}", k1.txt())
    check(m.check_now(a, "eu-west-1") == "SUCCESS", "eu-west-1 identity checked by region")
    check(m.dkim(a)["Tokens"] == ["s3"], "us-east-1 keeps its own selector")
    resp = m.call("GET", f"/v2/email/identities/{a}")  # no Authorization: us-east-1
    check(resp[0] == 200 and resp[2]["DkimAttributes"]["Tokens"] == ["s3"],
          "no Authorization header -> us-east-1")

    section("back to Easy DKIM, forced status, state")
    old = m.dkim(b)
    st, _, body = m.put_easy(b)
    check(st == 200 and body.get("DkimStatus") == "PENDING" and len(body.get("DkimTokens")) == 3
          and all(tok.fullmatch(t) for t in body["DkimTokens"]), "AWS_SES put -> 3 new tokens",
          body)
    d = m.dkim(b)
    check(d["SigningAttributesOrigin"] == "AWS_SES" and not set(d["Tokens"]) & set(old["Tokens"]),
          "origin AWS_SES, tokens changed", d)
    check(m.ctl("POST", "status", {"identity": b, "status": "SUCCESS"})[0] == 200
          and m.dkim(b)["Status"] == "SUCCESS", "force SUCCESS on Easy DKIM")
    check(m.ctl("POST", "status", {"identity": b, "status": "BOGUS"})[0] == 400,
          "force an unknown status -> 400")
    check(m.ctl("POST", "expire", {"identity": b})[0] == 400, "expire on Easy DKIM -> 400")
    st, _, state = m.ctl("GET", "state")
    text = json.dumps(state)
    check(st == 200 and len(state["identities"]) == 3
          and {(i["identity"], i["region"]) for i in state["identities"]}
          == {(a, "us-east-1"), (b, "us-east-1"), (a, "eu-west-1")}, "state lists identities",
          state)
    check(all(k not in text for key in keys.values() for k in (key.pkcs1, key.pkcs8))
          and "rivate" not in text, "state holds no private key")
    st, _, body = m.ctl("POST", "check", {})
    check(st == 200 and body == {"checked": 2}, "check all -> {checked: N} (EXTERNAL only)", body)

    section("chaos")
    st, _, body = m.ctl("POST", "chaos", {"rules": [
        {"probability": 1.0, "status": 429, "code": "TooManyRequestsException",
         "message": "Rate exceeded"},
        {"latency_ms": [2, 15]},
    ]})
    check(st == 200 and [r["fired"] for r in body["rules"]] == [0, 0], "rules set", body)
    t0 = time.monotonic()
    results = [m.get(a), m.create("c.dkim.test"), m.put_external(a, "s9", k1.pkcs1),
               m.delete(a), m.call("GET", "/v2/email/identities/x")]
    elapsed = time.monotonic() - t0
    check(all(is_error(r, 429, "TooManyRequestsException") for r in results[:4]),
          "every SES call -> 429 TooManyRequestsException", [r[0] for r in results])
    check(results[0][2]["message"] == "Rate exceeded", "the injected message")
    check(elapsed >= 0.010, f"latency injected ({elapsed * 1000:.0f} ms for 5 calls)")
    st, _, body = m.ctl("GET", "chaos")
    check(st == 200 and [r["fired"] for r in body["rules"]] == [5, 5],
          "fired counts = calls (control calls not counted)", body)
    check(m.dkim(a, "eu-west-1") is None and m.ctl("GET", "state")[0] == 200,
          "control API is not subject to chaos")
    # concurrency: counters are thread-safe
    threads = [threading.Thread(target=lambda: [m.get(a) for _ in range(10)]) for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    body = m.ctl("GET", "chaos")[2]
    check([r["fired"] for r in body["rules"]] == [86, 86], "80 concurrent calls all counted",
          body)
    check(m.ctl("POST", "chaos", {"rules": [{"probability": 2}]})[0] == 400, "bad rule -> 400")
    m.ctl("POST", "chaos", {"rules": [{"probability": 0.5, "status": 500,
                                       "code": "InternalFailure", "message": "boom"}]})
    codes = [m.get(a)[0] for _ in range(200)]
    fired = m.ctl("GET", "chaos")[2]["rules"][0]["fired"]
    check(codes.count(500) == fired and 50 < fired < 150,
          f"probability 0.5: {fired} of 200 failed, all counted")
    st, _, body = m.ctl("DELETE", "chaos")
    check(st == 200 and body == {"rules": []} and m.get(a)[0] == 200, "DELETE clears the rules")

    section("DeleteEmailIdentity")
    st, _, body = m.delete(b)
    check(st == 200 and body == {}, "delete -> 200 {}", (st, body))
    check(is_error(m.get(b), 404, "NotFoundException"), "get after delete -> 404")
    check(m.create(b)[0] == 200 and m.dkim(b)["SigningAttributesOrigin"] == "AWS_SES",
          "re-create after delete starts on Easy DKIM")


def quotas(knot: Knot) -> None:
    section("quotas (AWS's defaults; then --rate 2 --max-identities 2)")
    m = ModelProc(knot.port)
    try:
        answers = [m.get("nobody.dkim.test") for _ in range(4)]
        throttled = [a for a in answers if is_error(a, 429, "TooManyRequestsException")]
        check(len(throttled) >= 2,
              "default quota 1 request/s: back-to-back calls answer 429 TooManyRequestsException",
              [a[0] for a in answers])
    finally:
        m.stop()
    m = ModelProc(knot.port, "--rate", "2", "--max-identities", "2", "--unmetered-key", "BEDTOOLS")
    try:
        first = m.create("q1.dkim.test")
        burst = [m.get("q1.dkim.test") for _ in range(3)]
        check(first[0] == 200 and any(is_error(a, 429, "TooManyRequestsException")
                                      for a in burst),
              "a call inside the interval is throttled", [a[0] for a in burst])
        path = "/v2/email/identities/q1.dkim.test"
        check(m.call("GET", path, region="us-east-1", akid="AKIDOTHER")[0] == 200,
              "the quota is per account: another access key still answers")
        unmetered = [m.call("GET", path, region="us-east-1", akid="BEDTOOLS")[0]
                     for _ in range(5)]
        check(unmetered == [200] * 5, "an --unmetered-key is never throttled", unmetered)
        other = m.get("q1.dkim.test", region="eu-west-1")
        check(is_error(other, 404, "NotFoundException"),
              "the quota is per region: eu-west-1 still answers", other[0])
        time.sleep(0.6)
        check(m.get("q1.dkim.test")[0] == 200, "after the interval a call is admitted again")
        time.sleep(0.6)
        check(m.create("q2.dkim.test")[0] == 200, "identity 2 of 2 is created")
        time.sleep(0.6)
        check(is_error(m.create("q3.dkim.test"), 400, "LimitExceededException"),
              "identity 3 of 2 -> LimitExceededException")
        time.sleep(0.6)
        check(m.create("q3.dkim.test", region="eu-west-1")[0] == 200,
              "the identity limit is per region")
        pages = [m.call("GET", "/v2/email/identities?PageSize=1", region="us-east-1",
                        akid="BEDTOOLS")]
        token = pages[0][2].get("NextToken")
        pages.append(m.call("GET", f"/v2/email/identities?PageSize=1&NextToken={token}",
                            region="us-east-1", akid="BEDTOOLS"))
        names = [i["IdentityName"] for p in pages for i in p[2].get("EmailIdentities", [])]
        check(names == ["q1.dkim.test", "q2.dkim.test"] and "NextToken" not in pages[1][2]
              and all(i.get("VerificationStatus") for p in pages for i in p[2]["EmailIdentities"]),
              "ListEmailIdentities pages this region's identities with their VerificationStatus",
              [p[2] for p in pages])
        st, _, listing = m.ctl("GET", "quota")
        check(st == 200 and listing["throttled"].get("AKIDTESTING/us-east-1", 0) >= 1
              and listing["admitted"].get("AKIDTESTING/us-east-1", 0) >= 4,
              "GET /_model/quota counts what was throttled and admitted", listing)
    finally:
        m.stop()


def background_checks(knot: Knot, keys: dict) -> None:
    section("background checker (--check-interval 0.2 --window 1.5)")
    m = ModelProc(knot.port, "--check-interval", "0.2", "--window", "1.5", "--rate", "0")
    try:
        k = keys["k1024"]
        m.create("bg1.dkim.test")
        m.create("bg2.dkim.test")
        knot.add_txt("bg._domainkey.bg1.dkim.test", k.txt())
        m.put_external("bg1.dkim.test", "bg", k.pkcs1)
        m.put_external("bg2.dkim.test", "bg", k.pkcs1)
        deadline = time.monotonic() + 5
        seen = []
        while time.monotonic() < deadline:
            s1, s2 = m.dkim("bg1.dkim.test")["Status"], m.dkim("bg2.dkim.test")["Status"]
            seen.append((s1, s2))
            if s1 == "SUCCESS" and s2 == "FAILED":
                break
            time.sleep(0.1)
        check(seen[-1] == ("SUCCESS", "FAILED"),
              "served key -> SUCCESS, unserved key -> FAILED after the window, on their own",
              seen[-3:])
        check(any(s2 == "PENDING" for _, s2 in seen), "the unserved key was PENDING first")
        knot.delete("bg._domainkey.bg1.dkim.test")
        deadline = time.monotonic() + 3
        while time.monotonic() < deadline and m.dkim("bg1.dkim.test")["Status"] == "SUCCESS":
            time.sleep(0.1)
        check(m.dkim("bg1.dkim.test")["Status"] == "TEMPORARY_FAILURE",
              "record removed -> TEMPORARY_FAILURE on its own")
    finally:
        m.stop()
    m = ModelProc(knot.port, "--dns-server", "127.0.0.1:9",  # last flag wins: nothing listens
                  "--rate", "0")
    try:
        m.create("to.dkim.test")
        m.put_external("to.dkim.test", "s", keys["k1024"].pkcs1)
        m.ctl("POST", "status", {"identity": "to.dkim.test", "status": "SUCCESS"})
        t0 = time.monotonic()
        status = m.check_now("to.dkim.test")
        took = time.monotonic() - t0
        check(status == "TEMPORARY_FAILURE" and took < 3,
              f"DNS server unreachable -> not served ({status}, {took:.1f} s)")
    finally:
        m.stop()


def main() -> int:
    require_tools()
    state = tempfile.mkdtemp(prefix="ses-model-selftest.")
    knot = None
    try:
        print("making keys with openssl ...")
        keys = {name: Key(bits) for name, bits in
                [("k1024", 1024), ("k1024b", 1024), ("k2048", 2048), ("k512", 512),
                 ("k2112", 2112)]}
        knot = Knot(state)
        print(f"knotd on 127.0.0.1:{knot.port} (zone {ZONE})")
        run(knot, keys)
    finally:
        if knot:
            knot.stop()
            if FAILURES:
                with open(f"{state}/knot.log") as f:
                    tail = f.read()[-2000:]
                if tail.strip():
                    print("---- knot.log ----\n" + tail)
        shutil.rmtree(state, ignore_errors=True)
    print(f"\n{PASSED} passed, {len(FAILURES)} failed")
    for f in FAILURES:
        print(f"  FAILED: {f}")
    return 1 if FAILURES else 0


if __name__ == "__main__":
    sys.exit(main())
