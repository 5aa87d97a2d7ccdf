"""Signs a message with a stored DKIM private key and verifies it with dkimpy.

Reads JSON on stdin: {"private_key", "selector", "domain", "dns_name", and "dns_server" or
"presentation"}. The private key is the bare base64 PKCS#1 DER the rotator stores. With
`dns_server` (host:port) dkimpy's key lookup asks that DNS server, so the verdict is about the
record DNS really serves; with `presentation` (the TXT record as quoted strings, joined the way
a DNS client does) it is about that text.
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
strings = re.findall(r'"((?:[^"\\]|\\.)*)"', req.get("presentation", ""))
txt = "".join(strings).encode()
expected = (req["dns_name"] + ".").lower()


def from_presentation(name, timeout=5):
    name = name.decode() if isinstance(name, bytes) else name
    return txt if name.lower().rstrip(".") + "." == expected else None


def from_dns_server(name, timeout=5):
    import dns.message
    import dns.query
    import dns.rdatatype

    name = name.decode() if isinstance(name, bytes) else name
    host, port = req["dns_server"].rsplit(":", 1)
    answer = dns.query.udp(dns.message.make_query(name, dns.rdatatype.TXT), host, port=int(port), timeout=timeout)
    for rrset in answer.answer:
        for rdata in rrset:
            return b"".join(rdata.strings)
    return None


dnsfunc = from_dns_server if req.get("dns_server") else from_presentation


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
