"""Fetch the certificate chain a TLS server presents, to choose a pin from it.

Uses CPython's `ssl` without verification (we want to *see* the chain, not trust it) and
reads the chain as sent. Nothing is sent to the server beyond the TLS handshake.
"""

from __future__ import annotations

import os
import socket
import ssl
from dataclasses import dataclass
from urllib.parse import urlsplit

from cryptography import x509
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.serialization import Encoding

from keyhook import KeyhookError


@dataclass
class Candidate:
    role: str          # "leaf", "intermediate" or "root"
    cert: x509.Certificate

    @property
    def der(self) -> bytes:
        return self.cert.public_bytes(Encoding.DER)

    @property
    def pem(self) -> str:
        return self.cert.public_bytes(Encoding.PEM).decode()


def fetch_chain(url: str, timeout: float = 5.0) -> list[Candidate]:
    """The chain the server at `url` sends, leaf first, each labelled with its role."""
    parts = urlsplit(url)
    if parts.scheme != "https" or not parts.hostname:
        raise KeyhookError(f"{url!r} is not an https:// URL", hint="pins exist only for TLS servers")
    host, port = parts.hostname, parts.port or 443
    if os.environ.get("KEYHOOK_LOOPBACK_ONLY") and not (host == "localhost" or host.startswith("127.")):
        # the test suite's guard: nothing leaves 127.0.0.1, not even a DNS query
        raise KeyhookError(f"{host} was not contacted: KEYHOOK_LOOPBACK_ONLY allows loopback only",
                           hint="unset KEYHOOK_LOOPBACK_ONLY outside the tests")
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    ctx.check_hostname = False
    ctx.verify_mode = ssl.CERT_NONE
    try:
        with socket.create_connection((host, port), timeout=timeout) as raw:
            with ctx.wrap_socket(raw, server_hostname=host) as tls:
                ders = [c.public_bytes() for c in tls._sslobj.get_unverified_chain()]  # CPython 3.10+
    except (OSError, ssl.SSLError) as e:
        raise KeyhookError(f"could not fetch the certificate chain of {host}:{port}: {e}",
                           hint="check the URL, and that the server is up and speaks TLS") from None
    certs = [x509.load_der_x509_certificate(d if isinstance(d, bytes) else ssl.PEM_cert_to_DER_cert(d))
             for d in ders]
    out = []
    for i, c in enumerate(certs):
        if i == 0:
            role = "leaf"
        elif c.issuer == c.subject:
            role = "root"
        else:
            role = "intermediate"
        out.append(Candidate(role, c))
    return out


def pin_matches(pin_der: bytes, chain: list[Candidate]) -> str | None:
    """Which role the pin has in the presented chain ("leaf", "intermediate", "root"), or None.

    A CA pin that the server does not send itself is still a match if it issued the top
    certificate the server sends (a root is usually not sent).
    """
    for cand in chain:
        if cand.der == pin_der:
            return cand.role
    pin = x509.load_der_x509_certificate(pin_der)
    if chain and chain[-1].cert.issuer == pin.subject:
        try:
            chain[-1].cert.verify_directly_issued_by(pin)
            return "root" if pin.issuer == pin.subject else "intermediate"
        except (ValueError, TypeError, InvalidSignature):  # names match, signature does not
            return None
    return None
