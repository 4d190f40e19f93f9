"""Host-side rule validation: what `keyhook rules push` refuses or warns about before sending."""

from __future__ import annotations

import base64
import json

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.serialization import Encoding
import datetime as dt

from keyhook import rules


def _cert_pem() -> str:
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(x509.oid.NameOID.COMMON_NAME, "pin")])
    now = dt.datetime.now(dt.timezone.utc)
    cert = (x509.CertificateBuilder().subject_name(name).issuer_name(name).public_key(key.public_key())
            .serial_number(1).not_valid_before(now).not_valid_after(now + dt.timedelta(days=1))
            .sign(key, hashes.SHA256()))
    return cert.public_bytes(Encoding.PEM).decode()


def hook(**definition):
    d = {"method": "Post", "url": "https://ha.example.org:8123/api/webhook/abc", "securityLevel": "TlsWithCACheck"}
    d.update(definition)
    return {"functionName": "Open garage", "definition": d}


def test_sample_is_normalised():
    """The rule goes to the device as the device itself stores it: its defaults filled in, the
    rest untouched (a JSON object content is serialised by the device, at fire time)."""
    rule, warnings = rules.normalise(hook(body={"contentType": "application/json", "content": {"a": 1}}))
    assert rule["definition"]["method"] == "Post"
    assert rule["definition"]["body"]["content"] == {"a": 1}
    assert rule["definition"]["securityLevel"] == "TlsWithCACheck"
    assert rule["events"] == ["trigger"]
    assert warnings == []


@pytest.mark.parametrize("field,value,needle", [
    ("method", "FETCH", "definition.method"),
    ("url", "ftp://x/y", "definition.url"),
    ("url", "https://[::1/x", "definition.url"),
    ("url", "https://h.example/a b", "definition.url"),
    ("url", "https://h.example:0/x", "definition.url"),
    ("securityLevel", "TlsMaybe", "definition.securityLevel"),
    ("timeout", -5, "definition.timeout"),
    ("additionalHttpHeaders", {"X-A": "v\r\nInjected: 1"}, "additionalHttpHeaders"),
    ("authentication", {"apiAuthenticationType": "OAuth2IssuedRefreshToken", "refreshToken": "r"}, "tokenEndpoint"),
    ("authentication", {"apiAuthenticationType": "Basic"}, "apiAuthenticationType"),
])
def test_bad_fields_are_named(field, value, needle):
    with pytest.raises(rules.RuleError) as e:
        rules.normalise(hook(**{field: value}))
    assert needle in str(e.value) and "Open garage" in str(e.value)


def test_scheme_must_match_level():
    with pytest.raises(rules.RuleError, match="does not go with level"):
        rules.normalise(hook(url="http://192.168.1.2/x"))


def test_pin_pem_and_base64_der_are_both_accepted():
    pem = _cert_pem()
    der = x509.load_pem_x509_certificate(pem.encode()).public_bytes(Encoding.DER)
    a, _ = rules.normalise(hook(securityLevel="TlsPinnedCertificate", pinnedCertificate=pem))
    b, _ = rules.normalise(hook(securityLevel="TlsPinnedCertificate", pinnedCertificate=base64.b64encode(der).decode()))
    assert a["definition"]["pinnedCertificate"] == pem
    assert b["definition"]["pinnedCertificate"] == base64.b64encode(der).decode()


def test_bad_pin_refused():
    with pytest.raises(rules.RuleError, match="pinnedCertificate"):
        rules.normalise(hook(securityLevel="TlsPinnedCertificate", pinnedCertificate="bm90IGEgY2VydA=="))


def test_insecure_levels_warn_and_public_address_says_refused():
    _, w = rules.normalise(hook(url="http://192.168.1.2/x", securityLevel="AllowHttp"))
    assert "not recommended" in str(w[0])
    _, w = rules.normalise(hook(url="https://203.0.113.9/x", securityLevel="TlsAllowSelfSigned"))
    assert "insecure_remote" in str(w[0])


def test_quirks_accepted():
    rule, _ = rules.normalise(hook(authentication={
        "apiAuthenticationType": "OAuth2IssuedRefreshToken", "refreshToken": "r",
        "tokenEndoint": "https://idp.example.org/token"}))
    assert rule["definition"]["authentication"]["tokenEndoint"] == "https://idp.example.org/token"
    rules.normalise(hook(authentication={
        "apiAuthenticationType": "OAuth2IssuedAccessToken", "accessToken": "a", "refreshToken": "stray"}))


def test_duplicate_names_and_bad_events(tmp_path):
    with pytest.raises(rules.RuleError, match="twice"):
        rules.normalise_all([hook(), hook()])
    with pytest.raises(rules.RuleError, match="events"):
        rules.normalise(hook(), events=["door:open"])
    f = tmp_path / "r.json"
    f.write_text("{not json")
    with pytest.raises(rules.RuleError, match="not valid JSON"):
        rules.load_rules(f)
    f.write_text(json.dumps([hook()]))
    assert rules.load_rules(f)[0]["functionName"] == "Open garage"
