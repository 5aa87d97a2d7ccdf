"""Signs a message with a stored DKIM private key and verifies it with dkimpy.

Reads JSON on stdin: {"private_key", "selector", "domain", "dns_name", "presentation"}.
The private key is the bare base64 PKCS#1 DER the rotator stores; `presentation` is the TXT
record as quoted strings, which this script joins the way a DNS client does.
Prints one JSON line: {"verified": bool, "tampered_verified": bool}.
"""
import json
import re
import sys
import textwrap

import dkim

req = json.load(sys.stdin)
pem = (
    "-----BEGIN RSA PRIVATE KEY-----\n"
    + "\n".join(textwrap.wrap(req["private_key"], 64))
    + "\n-----END RSA PRIVATE KEY-----\n"
).encode()
strings = re.findall(r'"((?:[^"\\]|\\.)*)"', req["presentation"])
txt = "".join(strings).encode()
expected = (req["dns_name"] + ".").lower()


def dnsfunc(name, timeout=5):
    name = name.decode() if isinstance(name, bytes) else name
    return txt if name.lower().rstrip(".") + "." == expected else None


message = (
    "From: ops@{d}\r\nTo: someone@example.org\r\nSubject: rotation check\r\n"
    "Message-ID: <check@{d}>\r\n\r\nThe new DKIM key signs this.\r\n"
).format(d=req["domain"]).encode()
signature = dkim.sign(
    message,
    req["selector"].encode(),
    req["domain"].encode(),
    pem,
    include_headers=[b"from", b"to", b"subject"],
)
signed = signature + message
verified = dkim.verify(signed, dnsfunc=dnsfunc)
tampered = signed.replace(b"signs this", b"signs that")
print(json.dumps({"verified": bool(verified), "tampered_verified": bool(dkim.verify(tampered, dnsfunc=dnsfunc))}))
