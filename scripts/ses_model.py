#!/usr/bin/env python3
"""A local stand-in for Amazon SESv2's DKIM behaviour, for the ses-dkim-rotator test bed.

    $VENV/bin/python scripts/ses_model.py --port PORT --dns-server 127.0.0.1:DNSPORT \
        [--check-interval SECONDS] [--first-look-after SECONDS] [--window SECONDS]

Speaks the REST-JSON protocol the AWS SDK sends for the SESv2 operations the rotator uses
(CreateEmailIdentity, GetEmailIdentity, PutEmailIdentityDkimSigningAttributes,
DeleteEmailIdentity). SigV4 is not verified; the region comes from the Authorization header's
credential scope (default us-east-1) and identities are kept per (region, identity).

What it models that other stand-ins do not: SES verifies a "Bring Your Own DKIM" key
asynchronously. After an EXTERNAL put the identity is PENDING with Tokens=[selector]; a "look"
(the background thread every --check-interval seconds, or POST /_model/check) queries the TXT
record <selector>._domainkey.<domain> at --dns-server and moves the status:

    PENDING + served                          -> SUCCESS
    PENDING + not served, window ran out      -> FAILED   (window starts at the put)
    SUCCESS + not served                      -> TEMPORARY_FAILURE
    TEMPORARY_FAILURE + served                -> SUCCESS
    FAILED                                    -> FAILED   (until the next put)

"Served" means exactly one DKIM record at that name whose p= is a DER SubjectPublicKeyInfo with
the put key's RSA modulus and exponent. NXDOMAIN, no record, a mismatch, a timeout or SERVFAIL
all count as "not served".

Control API for tests (no auth, JSON), under /_model/:
    POST   /_model/check   {"identity"?, "region"?}   one identity -> {"Status"}; all -> {"checked": N}
    POST   /_model/status  {"identity", "region"?, "status"}  force a status
    POST   /_model/expire  {"identity", "region"?}    move the put time back by the window
    GET    /_model/state                               everything except private keys (never kept)
    POST   /_model/reset                               forget every identity
    GET    /_model/quota                               what the quota refused and admitted, per region
    POST   /_model/chaos   {"rules": [...]}            replace fault rules for SES API calls
    GET    /_model/chaos                               the rules, each with "fired"
    DELETE /_model/chaos                               clear the rules

Quotas, as AWS documents them ("Service quotas in Amazon SES"): every SESv2 action except
sending is throttled at --rate requests per second per account (access key id) and region (default 1, AWS's figure; 0 turns
it off), answered `TooManyRequestsException` (HTTP 429) as SES does; a token bucket of --burst
requests (AWS does not publish its depth; default 1). CreateEmailIdentity refuses a region's
identity number --max-identities + 1 (default 10,000) with `LimitExceededException`. A key
named by --unmetered-key (a test bed's own set-up and checks) is not held to the quota.

Standard library + dnspython + dkimpy only. Private keys are never logged, returned or stored:
only the public modulus and exponent are kept.
"""

from __future__ import annotations

import argparse
import base64
import binascii
import json
import random
import re
import secrets
import string
import sys
import threading
import time
import uuid
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qs, unquote, urlsplit

import dkim.crypto
import dns.exception
import dns.flags
import dns.message
import dns.name
import dns.query
import dns.rcode
import dns.rdataclass
import dns.rdatatype

DEFAULT_REGION = "us-east-1"
DEFAULT_WINDOW = 72 * 3600
DNS_TIMEOUT = 2.0
STATUSES = ("PENDING", "SUCCESS", "FAILED", "TEMPORARY_FAILURE", "NOT_STARTED")
KEY_LENGTHS = ("RSA_1024_BIT", "RSA_2048_BIT")
# Deterministic Easy DKIM: AWS_SES_<REGION>, e.g. AWS_SES_EU_WEST_1 (SESv2 DkimSigningAttributes).
DEED_ORIGIN_RE = re.compile(r"AWS_SES_[A-Z]+(?:_[A-Z]+)+_[0-9]+")


def deed_region(origin: str) -> str:
    """AWS_SES_EU_WEST_1 -> eu-west-1."""
    return origin[len("AWS_SES_"):].lower().replace("_", "-")

SELECTOR_RE = re.compile(r"(([a-zA-Z0-9]|[a-zA-Z0-9][a-zA-Z0-9\-]*[a-zA-Z0-9]))")
PRIVATE_KEY_RE = re.compile(r"[a-zA-Z0-9+/]+={0,2}")
CREDENTIAL_RE = re.compile(r"Credential=([^/,\s]+)/\d{8}/([^/,\s]+)/[^/,\s]+/aws4_request")
# 1.2.840.113549.1.1.1 (rsaEncryption), DER contents of the OBJECT IDENTIFIER.
RSA_ENCRYPTION_OID = bytes.fromhex("2a864886f70d010101")
TOKEN_ALPHABET = string.ascii_lowercase + string.digits

SUPPORTED = (
    "this SESv2 model supports: POST /v2/email/identities (CreateEmailIdentity), "
    "GET /v2/email/identities (ListEmailIdentities), "
    "GET /v2/email/identities/{id} (GetEmailIdentity), "
    "PUT /v2/email/identities/{id}/dkim/signing (PutEmailIdentityDkimSigningAttributes), "
    "PUT /v2/email/identities/{id}/dkim (PutEmailIdentityDkimAttributes), "
    "DELETE /v2/email/identities/{id} (DeleteEmailIdentity); control API: "
    "POST /_model/check, POST /_model/status, POST /_model/expire, POST /_model/reset, "
    "GET /_model/state, GET /_model/quota, GET|POST|DELETE /_model/chaos"
)


def log(line: str) -> None:
    sys.stderr.write(f"{time.strftime('%H:%M:%S')} ses_model {line}\n")
    sys.stderr.flush()


class ApiError(Exception):
    def __init__(self, status: int, code: str, message: str):
        super().__init__(message)
        self.status = status
        self.code = code
        self.message = message


def bad_request(message: str) -> ApiError:
    return ApiError(400, "BadRequestException", message)


# --------------------------------------------------------------------------------------------
# DER: a small strict reader (definite lengths, no trailing bytes), cross-checked with dkimpy.
# --------------------------------------------------------------------------------------------


class DerError(ValueError):
    pass


def der_read(data: bytes, pos: int = 0) -> tuple[int, bytes, int]:
    """One TLV at `pos`: (tag, contents, position after it)."""
    if pos + 2 > len(data):
        raise DerError("truncated")
    tag = data[pos]
    if tag & 0x1F == 0x1F:
        raise DerError("multi-byte tags are not used here")
    length = data[pos + 1]
    pos += 2
    if length & 0x80:
        n = length & 0x7F
        if n == 0 or n > 4:
            raise DerError("indefinite or oversized length")
        if pos + n > len(data):
            raise DerError("truncated length")
        length = int.from_bytes(data[pos : pos + n], "big")
        if length < 0x80 or data[pos] == 0:
            raise DerError("non-minimal length")
        pos += n
    if pos + length > len(data):
        raise DerError("truncated contents")
    return tag, data[pos : pos + length], pos + length


def der_children(contents: bytes) -> list[tuple[int, bytes]]:
    out = []
    pos = 0
    while pos < len(contents):
        tag, value, pos = der_read(contents, pos)
        out.append((tag, value))
    return out


def der_whole(data: bytes, tag: int) -> bytes:
    """The contents of `data`, which must be exactly one TLV with `tag`."""
    got, value, end = der_read(data, 0)
    if got != tag:
        raise DerError(f"expected tag {tag:#04x}, found {got:#04x}")
    if end != len(data):
        raise DerError(f"{len(data) - end} trailing bytes")
    return value


def der_int(tlv: tuple[int, bytes]) -> int:
    tag, value = tlv
    if tag != 0x02 or not value:
        raise DerError("expected INTEGER")
    if len(value) > 1 and (
        (value[0] == 0 and value[1] < 0x80) or (value[0] == 0xFF and value[1] >= 0x80)
    ):
        raise DerError("non-minimal INTEGER")
    return int.from_bytes(value, "big", signed=True)


def check_rsa_algorithm(tlv: tuple[int, bytes]) -> None:
    tag, value = tlv
    if tag != 0x30:
        raise DerError("expected AlgorithmIdentifier SEQUENCE")
    parts = der_children(value)
    if not parts or parts[0][0] != 0x06:
        raise DerError("expected algorithm OBJECT IDENTIFIER")
    if parts[0][1] != RSA_ENCRYPTION_OID:
        raise DerError("algorithm is not rsaEncryption")
    if parts[1:] not in ([], [(0x05, b"")]):
        raise DerError("rsaEncryption parameters must be NULL")


def rsa_private_key(der: bytes) -> tuple[int, int, str]:
    """(modulus, public exponent, "PKCS#1"|"PKCS#8") of a DER RSA private key."""
    top = der_children(der_whole(der, 0x30))
    form = "PKCS#1"
    if len(top) >= 3 and top[1][0] == 0x30:
        # PKCS#8 PrivateKeyInfo: version, AlgorithmIdentifier, OCTET STRING, [attributes]
        if der_int(top[0]) not in (0, 1):
            raise DerError("unsupported PKCS#8 version")
        check_rsa_algorithm(top[1])
        if top[2][0] != 0x04:
            raise DerError("expected privateKey OCTET STRING")
        for tag, _ in top[3:]:
            if tag & 0xC0 != 0x80:  # [0] attributes / [1] public key (OneAsymmetricKey)
                raise DerError("unexpected element after privateKey")
        top = der_children(der_whole(top[2][1], 0x30))
        form = "PKCS#8"
    if len(top) != 9:
        raise DerError("an RSAPrivateKey has 9 integers (two-prime keys only)")
    version, n, e, d, p, q, dp, dq, qinv = (der_int(t) for t in top)
    if version != 0:
        raise DerError("RSAPrivateKey version must be 0")
    if n <= 0 or e <= 1 or d <= 0 or p <= 1 or q <= 1:
        raise DerError("non-positive key component")
    if p * q != n:
        raise DerError("modulus is not the product of the primes")
    if e % 2 == 0:
        raise DerError("public exponent is even")
    return n, e, form


def rsa_public_key_spki(der: bytes) -> tuple[int, int]:
    """(modulus, exponent) of a DER SubjectPublicKeyInfo holding an RSA key."""
    top = der_children(der_whole(der, 0x30))
    if len(top) != 2:
        raise DerError("a SubjectPublicKeyInfo has 2 elements")
    check_rsa_algorithm(top[0])
    tag, bits = top[1]
    if tag != 0x03 or not bits or bits[0] != 0:
        raise DerError("expected BIT STRING with no unused bits")
    parts = der_children(der_whole(bits[1:], 0x30))
    if len(parts) != 2:
        raise DerError("an RSAPublicKey has 2 integers")
    n, e = der_int(parts[0]), der_int(parts[1])
    if n <= 0 or e <= 1:
        raise DerError("non-positive key component")
    return n, e


def parse_private_key_b64(text: str) -> tuple[int, int, str]:
    """Validate DomainSigningPrivateKey like SES; (modulus, exponent, form) or BadRequest."""
    if not isinstance(text, str) or not 1 <= len(text) <= 20480:
        raise bad_request(
            "DomainSigningPrivateKey must be a string of 1 to 20480 characters "
            "(the base64 of a DER RSA private key)"
        )
    if not PRIVATE_KEY_RE.fullmatch(text):
        raise bad_request(
            "DomainSigningPrivateKey must match ^[a-zA-Z0-9+\\/]+={0,2}$: the bare base64 of a "
            "DER RSA private key, with no PEM header, line breaks or spaces"
        )
    try:
        der = base64.b64decode(text, validate=True)
    except (binascii.Error, ValueError):
        raise bad_request("DomainSigningPrivateKey is not valid base64") from None
    try:
        n, e, form = rsa_private_key(der)
    except DerError as err:
        raise bad_request(
            f"DomainSigningPrivateKey is not a DER RSA private key (PKCS#1 or PKCS#8): {err}"
        ) from None
    # Cross-check with dkimpy (what a DKIM signer would load).
    try:
        parsed = dkim.crypto.parse_private_key(der)
    except Exception as err:  # dkimpy raises several types on bad input
        raise bad_request(
            f"DomainSigningPrivateKey could not be loaded as an RSA key: {type(err).__name__}"
        ) from None
    if parsed["modulus"] != n or parsed["publicExponent"] != e:
        raise bad_request("DomainSigningPrivateKey is ambiguous (parsers disagree)")
    bits = n.bit_length()
    if not 1024 <= bits <= 2048:
        raise bad_request(
            f"DomainSigningPrivateKey has a {bits}-bit modulus; "
            "SES accepts RSA keys of 1024 to 2048 bits"
        )
    return n, e, form


def validate_selector(selector) -> str:
    if not isinstance(selector, str) or not 1 <= len(selector) <= 63:
        raise bad_request("DomainSigningSelector must be a string of 1 to 63 characters")
    if not SELECTOR_RE.fullmatch(selector):
        raise bad_request(
            "DomainSigningSelector must match "
            "^(([a-zA-Z0-9]|[a-zA-Z0-9][a-zA-Z0-9\\-]*[a-zA-Z0-9]))$"
        )
    return selector


# --------------------------------------------------------------------------------------------
# DNS: "SES looks now".
# --------------------------------------------------------------------------------------------


def parse_dns_server(text: str) -> tuple[str, int]:
    m = re.fullmatch(r"\[([0-9a-fA-F:.]+)\](?::(\d+))?|([0-9.]+)(?::(\d+))?", text)
    if not m:
        raise argparse.ArgumentTypeError(f"expected ip:port, got {text!r}")
    host = m.group(1) or m.group(3)
    port = int(m.group(2) or m.group(4) or 53)
    return host, port


def dkim_tags(record: str) -> dict[str, str] | None:
    tags = {}
    for part in record.split(";"):
        part = part.strip()
        if not part:
            continue
        if "=" not in part:
            return None
        name, value = part.split("=", 1)
        tags[name.strip()] = value.strip()
    return tags


def lookup_txt(server: tuple[str, int], name: str) -> tuple[list[str], str]:
    """TXT records at `name` (each record's strings joined) and a short outcome for the log."""
    qname = dns.name.from_text(name)
    query = dns.message.make_query(qname, dns.rdatatype.TXT)
    host, port = server
    deadline = time.monotonic() + DNS_TIMEOUT
    try:
        response = dns.query.udp(query, host, timeout=DNS_TIMEOUT, port=port)
        if response.flags & dns.flags.TC:
            remaining = max(0.05, deadline - time.monotonic())
            response = dns.query.tcp(query, host, timeout=remaining, port=port)
    except dns.exception.Timeout:
        return [], "timeout"
    except (OSError, dns.exception.DNSException) as err:
        return [], f"error {type(err).__name__}"
    rcode = response.rcode()
    if rcode != dns.rcode.NOERROR:
        return [], dns.rcode.to_text(rcode)
    # Follow a CNAME chain inside the answer, as a resolver would.
    target = qname
    for _ in range(8):
        cname = response.get_rrset(
            response.answer, target, dns.rdataclass.IN, dns.rdatatype.CNAME
        )
        if cname is None:
            break
        target = cname[0].target
    rrset = response.get_rrset(response.answer, target, dns.rdataclass.IN, dns.rdatatype.TXT)
    if rrset is None:
        return [], "no TXT"
    records = [b"".join(r.strings).decode("latin-1") for r in rrset]
    return records, f"{len(records)} TXT"


def served_key(records: list[str]) -> tuple[tuple[int, int] | None, str]:
    """The RSA public key the records serve, or None and why not."""
    candidates = []
    for record in records:
        tags = dkim_tags(record)
        if record.lstrip().startswith("v=DKIM1") or (tags is not None and "p" in tags):
            candidates.append((record, tags))
    if not candidates:
        return None, "no DKIM record"
    if len(candidates) > 1:
        return None, f"{len(candidates)} DKIM records"
    _record, tags = candidates[0]
    if tags is None:
        return None, "malformed tag list"
    if "v" in tags and tags["v"] != "DKIM1":
        return None, "v= is not DKIM1"
    if tags.get("k", "rsa") != "rsa":
        return None, f"k={tags['k']}"
    p = re.sub(r"\s+", "", tags.get("p", ""))
    if not p:
        return None, "empty p= (revoked)"
    try:
        der = base64.b64decode(p, validate=True)
        n, e = rsa_public_key_spki(der)
    except (binascii.Error, ValueError) as err:
        return None, f"p= is not a DER RSA SubjectPublicKeyInfo ({err})"
    try:
        parsed = dkim.crypto.parse_public_key(der)
    except Exception as err:
        return None, f"dkimpy cannot parse p= ({type(err).__name__})"
    if (parsed["modulus"], parsed["publicExponent"]) != (n, e):
        return None, "p= is ambiguous (parsers disagree)"
    return (n, e), "ok"


# --------------------------------------------------------------------------------------------
# State.
# --------------------------------------------------------------------------------------------


def new_tokens() -> list[str]:
    return ["".join(secrets.choice(TOKEN_ALPHABET) for _ in range(32)) for _ in range(3)]


class Identity:
    def __init__(self, region: str, name: str, tags: list):
        self.region = region
        self.name = name
        self.tags = tags
        self.created = time.time()
        self.generation = 0  # bumped by every key change, so a stale DNS look is dropped
        self.signing_enabled = True  # PutEmailIdentityDkimAttributes; no other call changes it
        self.easy_dkim(time.time(), "RSA_2048_BIT")

    def easy_dkim(self, now: float, key_length: str) -> None:
        self.origin = "AWS_SES"
        self.status = "PENDING"
        self.tokens = new_tokens()
        self.selector = None
        self.public = None  # (modulus, exponent) of the external key
        self.key_bits = None
        self.put_time = None
        self.key_length = key_length
        self.key_generated = now
        self.last_check = None
        self.generation += 1

    def replica_of(self, origin: str, parent: "Identity | None") -> None:
        """Deterministic Easy DKIM: the parent's tokens and status under `AWS_SES_<PARENT>`.
        Without a parent that uses Easy DKIM, SES fails the replica's verification
        (VerificationInfo.ErrorType REPLICATION_PRIMARY_NOT_FOUND)."""
        self.origin = origin
        if parent is not None and parent.origin == "AWS_SES":
            self.status = parent.status
            self.tokens = list(parent.tokens)
        else:
            self.status = "FAILED"
            self.tokens = []
        self.selector = None
        self.public = None
        self.key_bits = None
        self.put_time = None
        self.generation += 1

    def external(self, now: float, selector: str, n: int, e: int) -> None:
        self.origin = "EXTERNAL"
        self.status = "PENDING"
        self.tokens = [selector]
        self.selector = selector
        self.public = (n, e)
        self.key_bits = n.bit_length()
        self.put_time = now
        self.last_check = None
        self.generation += 1

    def dkim_attributes(self) -> dict:
        attrs = {
            "SigningEnabled": self.signing_enabled,
            "Status": self.status,
            "Tokens": list(self.tokens),
            "SigningAttributesOrigin": self.origin,
        }
        if self.origin == "AWS_SES":
            attrs["NextSigningKeyLength"] = self.key_length
            attrs["CurrentSigningKeyLength"] = self.key_length
            attrs["LastKeyGenerationTimestamp"] = self.key_generated
        return attrs

    def describe(self) -> dict:
        return {
            "identity": self.name,
            "region": self.region,
            "origin": self.origin,
            "signing_enabled": self.signing_enabled,
            "status": self.status,
            "tokens": list(self.tokens),
            "selector": self.selector,
            "key_bits": self.key_bits,
            "put_time": self.put_time,
            "created": self.created,
            "last_check": self.last_check,
        }


class Model:
    max_identities = 10_000

    def __init__(self, dns_server: tuple[str, int], window: float):
        self.dns_server = dns_server
        self.window = window
        self.lock = threading.Lock()
        self.identities: dict[tuple[str, str], Identity] = {}

    def _get(self, region: str, name: str) -> Identity:
        identity = self.identities.get((region, name))
        if identity is None:
            raise ApiError(
                404, "NotFoundException", f"Email identity {name} does not exist in {region}."
            )
        return identity

    # ---- SES API ----

    def create(self, region: str, body: dict) -> dict:
        name = body.get("EmailIdentity")
        if not isinstance(name, str) or not name:
            raise bad_request("EmailIdentity is required")
        if "@" in name:
            raise bad_request(
                "this SES model supports domain identities only (DKIM is per domain)"
            )
        tags = body.get("Tags") or []
        if not isinstance(tags, list):
            raise bad_request("Tags must be a list")
        signing = body.get("DkimSigningAttributes")
        external = None
        replica = None
        key_length = "RSA_2048_BIT"
        if signing is not None:
            if not isinstance(signing, dict):
                raise bad_request("DkimSigningAttributes must be an object")
            replica = signing.get("DomainSigningAttributesOrigin")
            if replica is not None:
                if not isinstance(replica, str) or not DEED_ORIGIN_RE.fullmatch(replica):
                    raise bad_request(
                        "DomainSigningAttributesOrigin: all values except AWS_SES and "
                        "EXTERNAL (AWS_SES_<REGION>, to replicate a parent identity)"
                    )
                if set(signing) - {"DomainSigningAttributesOrigin"}:
                    raise bad_request(
                        "a replica (DomainSigningAttributesOrigin) takes no key or selector"
                    )
            selector = signing.get("DomainSigningSelector")
            key = signing.get("DomainSigningPrivateKey")
            if selector is not None or key is not None:
                if selector is None or key is None:
                    raise bad_request(
                        "DomainSigningSelector and DomainSigningPrivateKey go together"
                    )
                n, e, _form = parse_private_key_b64(key)
                external = (validate_selector(selector), n, e)
            elif "NextSigningKeyLength" in signing:
                key_length = signing["NextSigningKeyLength"]
                if key_length not in KEY_LENGTHS:
                    raise bad_request(f"NextSigningKeyLength must be one of {KEY_LENGTHS}")
        with self.lock:
            if (region, name) in self.identities:
                raise ApiError(
                    400, "AlreadyExistsException", f"Email identity {name} already exists."
                )
            in_region = sum(1 for r, _ in self.identities if r == region)
            if in_region >= self.max_identities:
                raise ApiError(
                    400, "LimitExceededException",
                    f"There are too many instances of the specified resource type "
                    f"({self.max_identities} identities in {region}).",
                )
            identity = Identity(region, name, tags)
            identity.key_length = key_length
            if external:
                identity.external(time.time(), *external)
            if replica:
                identity.replica_of(replica, self.identities.get((deed_region(replica), name)))
            self.identities[(region, name)] = identity
            return {
                "IdentityType": "DOMAIN",
                "VerifiedForSendingStatus": identity.status == "SUCCESS",
                "DkimAttributes": identity.dkim_attributes(),
            }

    def list_identities(self, region: str, page_size: int, token: str | None) -> dict:
        """ListEmailIdentities: this region's identities by name, `page_size` (1-1000) a page;
        the token is the offset (AWS's is opaque)."""
        if not 1 <= page_size <= 1000:
            raise bad_request("PageSize must be from 1 to 1000")
        try:
            start = int(token) if token else 0
        except ValueError:
            raise bad_request("NextToken is not valid") from None
        with self.lock:
            names = sorted(n for r, n in self.identities if r == region)
            page = names[start:start + page_size]
            listed = [{"IdentityType": "DOMAIN", "IdentityName": n, "SendingEnabled": True,
                       "VerificationStatus": self.identities[(region, n)].status} for n in page]
        out = {"EmailIdentities": listed}
        if start + page_size < len(names):
            out["NextToken"] = str(start + page_size)
        return out

    def get(self, region: str, name: str) -> dict:
        with self.lock:
            identity = self._get(region, name)
            return {
                "IdentityType": "DOMAIN",
                "FeedbackForwardingStatus": True,
                "VerifiedForSendingStatus": identity.status == "SUCCESS",
                "DkimAttributes": identity.dkim_attributes(),
                "MailFromAttributes": {"BehaviorOnMxFailure": "USE_DEFAULT_VALUE"},
                "Policies": {},
                "Tags": list(identity.tags),
                "VerificationStatus": identity.status,
            }

    def put_signing(self, region: str, name: str, body: dict) -> dict:
        origin = body.get("SigningAttributesOrigin")
        if isinstance(origin, str) and DEED_ORIGIN_RE.fullmatch(origin):
            if body.get("SigningAttributes"):
                raise bad_request("AWS_SES_<REGION> takes no SigningAttributes")
            with self.lock:
                identity = self._get(region, name)
                identity.replica_of(origin, self.identities.get((deed_region(origin), name)))
                return {"DkimStatus": identity.status, "DkimTokens": list(identity.tokens)}
        if origin not in ("EXTERNAL", "AWS_SES"):
            raise bad_request("SigningAttributesOrigin must be EXTERNAL, AWS_SES or AWS_SES_<REGION>")
        attrs = body.get("SigningAttributes") or {}
        if not isinstance(attrs, dict):
            raise bad_request("SigningAttributes must be an object")
        external = None
        key_length = None
        if origin == "EXTERNAL":
            if "DomainSigningSelector" not in attrs or "DomainSigningPrivateKey" not in attrs:
                raise bad_request(
                    "SigningAttributes.DomainSigningSelector and "
                    "SigningAttributes.DomainSigningPrivateKey are required for EXTERNAL"
                )
            selector = validate_selector(attrs["DomainSigningSelector"])
            n, e, _form = parse_private_key_b64(attrs["DomainSigningPrivateKey"])
            external = (selector, n, e)
        else:
            if "DomainSigningSelector" in attrs or "DomainSigningPrivateKey" in attrs:
                raise bad_request(
                    "DomainSigningSelector and DomainSigningPrivateKey are only for EXTERNAL"
                )
            key_length = attrs.get("NextSigningKeyLength", "RSA_2048_BIT")
            if key_length not in KEY_LENGTHS:
                raise bad_request(f"NextSigningKeyLength must be one of {KEY_LENGTHS}")
        with self.lock:
            identity = self._get(region, name)
            if external:
                identity.external(time.time(), *external)
            else:
                identity.easy_dkim(time.time(), key_length)
            return {"DkimStatus": identity.status, "DkimTokens": list(identity.tokens)}

    def put_dkim(self, region: str, name: str, body: dict) -> dict:
        """PutEmailIdentityDkimAttributes: turns DKIM signing on or off, nothing else."""
        enabled = body.get("SigningEnabled", False)
        if not isinstance(enabled, bool):
            raise bad_request("SigningEnabled must be a boolean")
        with self.lock:
            self._get(region, name).signing_enabled = enabled
        return {}

    def delete(self, region: str, name: str) -> dict:
        with self.lock:
            self._get(region, name)
            del self.identities[(region, name)]
            return {}

    # ---- DNS checks ----

    def check(self, region: str, name: str) -> dict:
        with self.lock:
            identity = self._get(region, name)
            if identity.origin != "EXTERNAL":
                return {
                    "Status": identity.status,
                    "checked": False,
                    "reason": "Easy DKIM (AWS_SES): the model cannot see CNAMEs; "
                    "use POST /_model/status",
                }
            snapshot = (identity.generation, identity.selector, identity.public)
        generation, selector, public = snapshot
        dns_name = f"{selector}._domainkey.{name}"
        records, outcome = lookup_txt(self.dns_server, dns_name)
        key, why = served_key(records) if records else (None, outcome)
        served = key is not None and key == public
        if key is not None and not served:
            why = "record serves a different key"
        now = time.time()
        with self.lock:
            identity = self.identities.get((region, name))
            if identity is None or identity.generation != generation:
                # Deleted or re-put while we looked: this look is stale.
                return {"Status": identity.status if identity else None, "checked": False,
                        "reason": "identity changed during the lookup"}
            before = identity.status
            if served:
                if before in ("PENDING", "TEMPORARY_FAILURE", "NOT_STARTED"):
                    identity.status = "SUCCESS"
            else:
                if before in ("PENDING", "NOT_STARTED"):
                    if now - identity.put_time >= self.window:
                        identity.status = "FAILED"
                elif before == "SUCCESS":
                    identity.status = "TEMPORARY_FAILURE"
            identity.last_check = now
            after = identity.status
        detail = "served" if served else f"not served: {why}"
        log(f"check {region} {name} {dns_name} TXT: {outcome}; {detail}; {before} -> {after}")
        return {"Status": after, "checked": True, "served": served, "detail": detail}

    def check_all(self, min_age: float = 0.0) -> int:
        """Checks every EXTERNAL key put at least `min_age` seconds ago."""
        newest = time.time() - min_age
        with self.lock:
            keys = [k for k, i in self.identities.items()
                    if i.origin == "EXTERNAL" and (i.put_time or 0) <= newest]
        for region, name in keys:
            try:
                self.check(region, name)
            except ApiError:
                pass  # deleted meanwhile
        return len(keys)

    # ---- control ----

    def force_status(self, region: str, name: str, status: str) -> dict:
        if status not in STATUSES:
            raise bad_request(f"status must be one of {STATUSES}")
        with self.lock:
            identity = self._get(region, name)
            before = identity.status
            identity.status = status
        log(f"forced {region} {name}: {before} -> {status}")
        return {"Status": status}

    def expire(self, region: str, name: str) -> dict:
        with self.lock:
            identity = self._get(region, name)
            if identity.put_time is None:
                raise bad_request(f"{name} has no external key (Easy DKIM): nothing to expire")
            identity.put_time -= self.window
            return {"Status": identity.status, "put_time": identity.put_time}

    def state(self) -> dict:
        with self.lock:
            identities = [i.describe() for i in self.identities.values()]
        return {
            "identities": identities,
            "window": self.window,
            "dns_server": f"{self.dns_server[0]}:{self.dns_server[1]}",
        }

    def reset(self) -> dict:
        with self.lock:
            n = len(self.identities)
            self.identities.clear()
        return {"removed": n}


# --------------------------------------------------------------------------------------------
# Chaos (replaces `awsim chaos`).
# --------------------------------------------------------------------------------------------


class Chaos:
    RULE_KEYS = {"probability", "status", "code", "message", "latency_ms", "operations"}

    def __init__(self):
        self.lock = threading.Lock()
        self.rules: list[dict] = []
        self.random = random.SystemRandom()

    def set_rules(self, rules) -> dict:
        if not isinstance(rules, list):
            raise bad_request('expected {"rules": [...]}')
        clean = []
        for i, rule in enumerate(rules):
            if not isinstance(rule, dict):
                raise bad_request(f"rule {i} must be an object")
            unknown = set(rule) - self.RULE_KEYS - {"fired"}
            if unknown:
                raise bad_request(f"rule {i}: unknown keys {sorted(unknown)}; "
                                  f"known: {sorted(self.RULE_KEYS)}")
            p = rule.get("probability", 1.0)
            if not isinstance(p, (int, float)) or not 0 <= p <= 1:
                raise bad_request(f"rule {i}: probability must be in [0, 1]")
            out = {"probability": float(p), "fired": 0}
            if "status" in rule:
                status = rule["status"]
                if not isinstance(status, int) or not 400 <= status <= 599:
                    raise bad_request(f"rule {i}: status must be an HTTP error status")
                out["status"] = status
                out["code"] = str(rule.get("code") or "InternalFailure")
                out["message"] = str(rule.get("message") or "injected fault")
            elif "code" in rule or "message" in rule:
                raise bad_request(f"rule {i}: code/message need a status")
            if "latency_ms" in rule:
                lat = rule["latency_ms"]
                if isinstance(lat, (int, float)):
                    lat = [lat, lat]
                if (not isinstance(lat, list) or len(lat) != 2
                        or not all(isinstance(x, (int, float)) and x >= 0 for x in lat)
                        or lat[0] > lat[1]):
                    raise bad_request(f"rule {i}: latency_ms must be N or [min, max]")
                out["latency_ms"] = [lat[0], lat[1]]
            if "status" not in out and "latency_ms" not in out:
                raise bad_request(f"rule {i}: needs a status (error) or latency_ms")
            if "operations" in rule:
                ops = rule["operations"]
                if not isinstance(ops, list) or not all(isinstance(o, str) for o in ops):
                    raise bad_request(f"rule {i}: operations must be a list of operation names")
                out["operations"] = list(ops)
            clean.append(out)
        with self.lock:
            self.rules = clean
        return self.listing()

    def clear(self) -> dict:
        with self.lock:
            self.rules = []
        return {"rules": []}

    def listing(self) -> dict:
        with self.lock:
            return {"rules": [dict(r) for r in self.rules]}

    def apply(self, operation: str) -> ApiError | None:
        """Latency (slept here) and the first error rule that fires, for one SES API call."""
        delay = 0.0
        error = None
        with self.lock:
            for rule in self.rules:
                if "operations" in rule and operation not in rule["operations"]:
                    continue
                if self.random.random() >= rule["probability"]:
                    continue
                if "status" in rule and error is not None:
                    continue  # an earlier error rule already decided this call
                rule["fired"] += 1
                if "latency_ms" in rule:
                    lo, hi = rule["latency_ms"]
                    delay += self.random.uniform(lo, hi) / 1000.0
                if "status" in rule:
                    error = ApiError(rule["status"], rule["code"], rule["message"])
        if delay:
            time.sleep(delay)
        return error


class Quota:
    """SES's request quota per region: a token bucket refilled continuously at `rate`."""

    def __init__(self, rate: float, burst: float, unmetered: tuple[str, ...] = ()):
        self.unmetered = set(unmetered)
        self.rate = rate
        self.burst = max(burst, 1.0)
        self.lock = threading.Lock()
        self.buckets: dict[str, tuple[float, float]] = {}
        self.throttled: dict[str, int] = {}
        self.admitted: dict[str, int] = {}

    def admit(self, account: str, region: str) -> ApiError | None:
        if self.rate <= 0 or account in self.unmetered:
            return None
        region = f"{account}/{region}"
        now = time.monotonic()
        with self.lock:
            tokens, counted = self.buckets.get(region, (self.burst, now))
            tokens = min(self.burst, tokens + (now - counted) * self.rate)
            if tokens < 1.0:
                self.buckets[region] = (tokens, now)
                self.throttled[region] = self.throttled.get(region, 0) + 1
                return ApiError(429, "TooManyRequestsException", "Too Many Requests")
            self.buckets[region] = (tokens - 1.0, now)
            self.admitted[region] = self.admitted.get(region, 0) + 1
            return None

    def listing(self) -> dict:
        with self.lock:
            return {"rate": self.rate, "burst": self.burst,
                    "throttled": dict(self.throttled), "admitted": dict(self.admitted)}


# --------------------------------------------------------------------------------------------
# HTTP.
# --------------------------------------------------------------------------------------------


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    # Headers and body go out in separate writes: without this, Nagle plus delayed ACKs add
    # ~40 ms to every keep-alive request.
    disable_nagle_algorithm = True
    server_version = "ses_model"
    sys_version = ""
    model: Model = None  # set in main
    quota: Quota = None  # set in main
    chaos: Chaos = None

    def log_message(self, format, *args):  # noqa: A002 - silence the default access log
        pass

    def do_GET(self):
        self.handle_request("GET")

    def do_POST(self):
        self.handle_request("POST")

    def do_PUT(self):
        self.handle_request("PUT")

    def do_DELETE(self):
        self.handle_request("DELETE")

    def do_PATCH(self):
        self.handle_request("PATCH")

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

    def region(self) -> str:
        m = CREDENTIAL_RE.search(self.headers.get("Authorization", ""))
        return m.group(2) if m else DEFAULT_REGION

    def account(self) -> str:
        """The caller, as the quota sees it: the access key id (the model has one account per
        key, so a test bed's own set-up and checks can use a key of their own)."""
        m = CREDENTIAL_RE.search(self.headers.get("Authorization", ""))
        return m.group(1) if m else "anonymous"

    def handle_request(self, method: str):
        started = time.monotonic()
        path = urlsplit(self.path).path
        note = ""
        status = 500
        try:
            raw = self.read_body()
            try:
                body = json.loads(raw) if raw.strip() else {}
            except ValueError:
                raise bad_request("the request body is not JSON") from None
            if not isinstance(body, dict):
                raise bad_request("the request body must be a JSON object")
            if path.startswith("/_model/"):
                status, result = 200, self.control(method, path, body)
            else:
                region = self.region()
                operation, identity = self.route(method, path)
                note = f" {operation} region={region}"
                if identity is not None:
                    note += f" identity={identity}"
                if operation == "PutEmailIdentityDkimSigningAttributes":
                    selector = (body.get("SigningAttributes") or {}).get("DomainSigningSelector")
                    note += f" origin={body.get('SigningAttributesOrigin')}"
                    if isinstance(selector, str) and len(selector) <= 63 and \
                            SELECTOR_RE.fullmatch(selector):
                        note += f" selector={selector}"
                    elif selector is not None:
                        # Not a valid selector: could be anything, even a misplaced key.
                        note += " selector=<invalid, not logged>"
                throttled = self.quota.admit(self.account(), region)
                if throttled is not None:
                    note += " (quota)"
                    raise throttled
                fault = self.chaos.apply(operation)
                if fault is not None:
                    note += " (chaos)"
                    raise fault
                status, result = 200, self.dispatch(operation, region, identity, body)
            self.send_json(status, result)
        except ApiError as err:
            status = err.status
            self.send_json(
                err.status,
                {"__type": err.code, "message": err.message},
                {"x-amzn-ErrorType": err.code},
            )
            note += f" -> {err.code}: {err.message}"
        except Exception as err:  # never let a bug look like an SES answer
            status = 500
            self.send_json(
                500,
                {"__type": "InternalFailure", "message": f"model bug: {type(err).__name__}"},
                {"x-amzn-ErrorType": "InternalFailure"},
            )
            note += f" -> model bug: {type(err).__name__}: {err}"
        elapsed = (time.monotonic() - started) * 1000
        log(f"{method} {path} {status}{note} ({elapsed:.1f} ms)")

    def send_json(self, status: int, payload: dict, headers: dict | None = None):
        data = json.dumps(payload).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.send_header("x-amzn-RequestId", str(uuid.uuid4()))
        for k, v in (headers or {}).items():
            self.send_header(k, v)
        self.end_headers()
        self.wfile.write(data)

    @staticmethod
    def route(method: str, path: str) -> tuple[str, str | None]:
        parts = path.split("/")
        # ["", "v2", "email", "identities", ...]
        if parts[:4] == ["", "v2", "email", "identities"]:
            rest = parts[4:]
            if rest in ([], [""]) and method == "POST":
                return "CreateEmailIdentity", None
            if rest in ([], [""]) and method == "GET":
                return "ListEmailIdentities", None
            if len(rest) == 1 and rest[0]:
                name = unquote(rest[0])
                if method == "GET":
                    return "GetEmailIdentity", name
                if method == "DELETE":
                    return "DeleteEmailIdentity", name
            if len(rest) == 2 and rest[0] and rest[1] == "dkim" and method == "PUT":
                return "PutEmailIdentityDkimAttributes", unquote(rest[0])
            if len(rest) == 3 and rest[0] and rest[1:] == ["dkim", "signing"] and method == "PUT":
                return "PutEmailIdentityDkimSigningAttributes", unquote(rest[0])
        raise ApiError(404, "UnknownOperationException",
                       f"{method} {path} is not modelled; {SUPPORTED}")

    def dispatch(self, operation: str, region: str, identity: str | None, body: dict) -> dict:
        m = self.model
        if operation == "CreateEmailIdentity":
            return m.create(region, body)
        if operation == "GetEmailIdentity":
            return m.get(region, identity)
        if operation == "ListEmailIdentities":
            query = parse_qs(urlsplit(self.path).query)
            size = (query.get("PageSize") or ["100"])[0]
            if not size.isdigit():
                raise bad_request("PageSize must be a number")
            return m.list_identities(region, int(size), (query.get("NextToken") or [None])[0])
        if operation == "PutEmailIdentityDkimSigningAttributes":
            return m.put_signing(region, identity, body)
        if operation == "PutEmailIdentityDkimAttributes":
            return m.put_dkim(region, identity, body)
        if operation == "DeleteEmailIdentity":
            return m.delete(region, identity)
        raise AssertionError(operation)

    def control(self, method: str, path: str, body: dict) -> dict:
        m = self.model
        region = body.get("region") or DEFAULT_REGION
        identity = body.get("identity")
        if path == "/_model/check" and method == "POST":
            if identity:
                return m.check(region, identity)
            return {"checked": m.check_all()}
        if path == "/_model/status" and method == "POST":
            if not identity or "status" not in body:
                raise bad_request('expected {"identity", "region"?, "status"}')
            return m.force_status(region, identity, body["status"])
        if path == "/_model/expire" and method == "POST":
            if not identity:
                raise bad_request('expected {"identity", "region"?}')
            return m.expire(region, identity)
        if path == "/_model/state" and method == "GET":
            return m.state()
        if path == "/_model/reset" and method == "POST":
            return m.reset()
        if path == "/_model/quota" and method == "GET":
            return self.quota.listing()
        if path == "/_model/chaos":
            if method == "GET":
                return self.chaos.listing()
            if method == "POST":
                return self.chaos.set_rules(body.get("rules"))
            if method == "DELETE":
                return self.chaos.clear()
        raise ApiError(404, "UnknownOperationException",
                       f"{method} {path} is not a control call; {SUPPORTED}")


def checker(model: Model, interval: float, first_look_after: float,
            stop: threading.Event) -> None:
    while not stop.wait(interval):
        try:
            model.check_all(first_look_after)
        except Exception as err:  # keep looking
            log(f"background check failed: {type(err).__name__}: {err}")


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--port", type=int, required=True, help="TCP port on 127.0.0.1 (0: any)")
    parser.add_argument("--dns-server", type=parse_dns_server, required=True,
                        help="ip:port of the DNS server SES 'looks' at")
    parser.add_argument("--check-interval", type=float, default=0.0,
                        help="seconds between background looks at every EXTERNAL key "
                             "(0, the default: only POST /_model/check looks)")
    parser.add_argument("--first-look-after", type=float, default=0.0,
                        help="the background looks leave a key alone this many seconds after "
                             "its put (SES takes its time; the demo shows PENDING first)")
    parser.add_argument("--window", type=float, default=DEFAULT_WINDOW,
                        help="seconds after a put before a PENDING key FAILs (default 259200)")
    parser.add_argument("--rate", type=float, default=1.0,
                        help="SESv2 requests per second per region (AWS: 1; 0: no quota)")
    parser.add_argument("--burst", type=float, default=1.0,
                        help="requests a quiet region may make back to back (default 1)")
    parser.add_argument("--unmetered-key", action="append", default=[],
                        help="an access key id the quota leaves alone (a test bed's own "
                             "set-up and checks); may repeat")
    parser.add_argument("--max-identities", type=int, default=10_000,
                        help="identities per region (AWS: 10,000)")
    args = parser.parse_args(argv)
    if args.check_interval < 0 or args.window < 0 or args.rate < 0 or args.max_identities < 0:
        parser.error("--check-interval, --window, --rate and --max-identities must not be "
                     "negative")

    model = Model(args.dns_server, args.window)
    model.max_identities = args.max_identities
    Handler.model = model
    Handler.quota = Quota(args.rate, args.burst, tuple(args.unmetered_key))
    Handler.chaos = Chaos()
    server = ThreadingHTTPServer(("127.0.0.1", args.port), Handler)
    server.daemon_threads = True
    stop = threading.Event()
    if args.check_interval > 0:
        threading.Thread(target=checker,
                         args=(model, args.check_interval, args.first_look_after, stop),
                         daemon=True, name="dns-checker").start()
    host, port = server.server_address[:2]
    log(f"listening on http://{host}:{port} (dns {args.dns_server[0]}:{args.dns_server[1]}, "
        f"check-interval {args.check_interval:g} s, window {args.window:g} s)")
    try:
        server.serve_forever(poll_interval=0.2)
    except KeyboardInterrupt:
        pass
    finally:
        stop.set()
        server.server_close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
