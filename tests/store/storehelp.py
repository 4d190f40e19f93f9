"""Helpers of the store tests: sample rules (with a per-run test certificate) and the
MicroPython prelude that mounts a littlefs image and points the store at it."""

from __future__ import annotations

import base64
import datetime
import json
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

# Secret markers: each must stay on the device's flash and never come out of `list`, errors or logs.
SECRETS = ("TOKEN-SECRET", "HEADER-SECRET", "BODY-SECRET", "PATH-SECRET", "REFRESH-SECRET", "QUERY-SECRET")

# A RAM-backed littlefs at /flash, store root /flash/data (tests/mp/powercut.py).
PRELUDE = """
import json, os, powercut
bd = powercut.RamBlockDev(blocks=48)
powercut.mount(bd, "/flash")
from kh import store
store.use("/flash/data")
from kh.store import rules
from kh.store.errors import StoreError
"""


def make_cert_pem() -> str:
    """A self-signed certificate made for this run (PEM), to pin."""
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "pin.test")])
    now = datetime.datetime.now(datetime.timezone.utc)
    cert = (x509.CertificateBuilder().subject_name(name).issuer_name(name).public_key(key.public_key())
            .serial_number(x509.random_serial_number()).not_valid_before(now)
            .not_valid_after(now + datetime.timedelta(days=1))
            .add_extension(x509.SubjectAlternativeName([x509.DNSName("pin.test")]), critical=False)
            .sign(key, hashes.SHA256()))
    return cert.public_bytes(serialization.Encoding.PEM).decode()


def make_rule(i: int, *, pem: str | None = None, events=None, tag: str = "", level: str | None = None) -> dict:
    """Rule number i; every variant carries secrets in the places a real one does."""
    level = level or ("TlsPinnedCertificate" if pem else "TlsWithCACheck")
    scheme = "http" if level == "AllowHttp" else "https"
    d: dict = {
        "method": "Post",
        "url": f"{scheme}://host{i}.example.org:8443/api/webhook/PATH-SECRET-{i}?k=QUERY-SECRET{tag}",
        "body": {"contentType": "application/json", "content": json.dumps({"auth": "BODY-SECRET", "n": i, "tag": tag})},
        "additionalHttpHeaders": {"X-Api-Key": "HEADER-SECRET"},
        "timeout": 3000,
        "securityLevel": level,
        "authentication": {"apiAuthenticationType": "OAuth2IssuedAccessToken", "accessToken": "TOKEN-SECRET"},
    }
    if i % 3 == 2:
        d["authentication"] = {"apiAuthenticationType": "OAuth2IssuedRefreshToken", "refreshToken": "REFRESH-SECRET",
                               "tokenEndpoint": "https://idp.example.org/token", "clientId": "kh", "scope": "x"}
    if pem:
        d["pinnedCertificate"] = pem
    r = {"integrationName": "Test", "locationName": "Lab", "functionName": f"rule {i}",
         "functionWebhookId": f"id-{i}", "definition": d}
    if events is not None:
        r["events"] = events
    return r


def write_json(tmp_path: Path, name: str, obj) -> str:
    p = tmp_path / name
    p.write_text(json.dumps(obj))
    return name
