"""`keyhook pin URL` shows the chain a local TLS server presents, and pin matching by role."""

from __future__ import annotations

import datetime as dt
import json
import socket
import ssl
import threading

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from keyhook.cli import main
from keyhook.rules.pin import fetch_chain, pin_matches


def _make(subject, issuer_name, issuer_key, key, ca, san=None):
    now = dt.datetime.now(dt.timezone.utc)
    b = (x509.CertificateBuilder().subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, subject)]))
         .issuer_name(issuer_name).public_key(key.public_key()).serial_number(x509.random_serial_number())
         .not_valid_before(now - dt.timedelta(hours=1)).not_valid_after(now + dt.timedelta(days=2))
         .add_extension(x509.BasicConstraints(ca=ca, path_length=None), critical=True))
    if san:
        b = b.add_extension(x509.SubjectAlternativeName(san), critical=False)
    return b.sign(issuer_key, hashes.SHA256())


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    d = tmp_path_factory.mktemp("pinpki")
    rk, ik, lk = (ec.generate_private_key(ec.SECP256R1()) for _ in range(3))
    rname = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "Pin Root")])
    root = _make("Pin Root", rname, rk, rk, True)
    inter = _make("Pin Intermediate", rname, rk, ik, True)
    leaf = _make("localhost", inter.subject, ik, lk, False,
                 [x509.DNSName("localhost"), x509.IPAddress(__import__("ipaddress").ip_address("127.0.0.1"))])
    pem = lambda c: c.public_bytes(serialization.Encoding.PEM)
    (d / "chain.pem").write_bytes(pem(leaf) + pem(inter))
    (d / "key.pem").write_bytes(lk.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                                 serialization.NoEncryption()))
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ctx.load_cert_chain(d / "chain.pem", d / "key.pem")
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    sock.listen(8)
    stop = threading.Event()

    def serve():
        sock.settimeout(0.2)
        while not stop.is_set():
            try:
                conn, _ = sock.accept()
            except OSError:
                continue
            try:
                with ctx.wrap_socket(conn, server_side=True) as t:
                    t.settimeout(1)
                    t.recv(1)
            except (OSError, ssl.SSLError):
                pass
    th = threading.Thread(target=serve, daemon=True)
    th.start()
    yield f"https://127.0.0.1:{sock.getsockname()[1]}/", root, inter, leaf
    stop.set()
    th.join()
    sock.close()


def der(c):
    return c.public_bytes(serialization.Encoding.DER)


def test_chain_roles_and_matching(server):
    url, root, inter, leaf = server
    chain = fetch_chain(url)
    assert [c.role for c in chain] == ["leaf", "intermediate"]
    assert chain[0].der == der(leaf) and chain[1].der == der(inter)
    assert pin_matches(der(leaf), chain) == "leaf"
    assert pin_matches(der(inter), chain) == "intermediate"
    assert pin_matches(der(root), chain) == "root"  # not sent, but it issued the top cert
    other = ec.generate_private_key(ec.SECP256R1())
    stranger = _make("Pin Root", root.subject, other, other, True)  # same name, other key
    assert pin_matches(der(stranger), chain) is None


def test_cli_prints_pem(server, capsys):
    url, *_ = server
    with pytest.raises(SystemExit) as e:
        main(["pin", url, "--json"])
    assert e.value.code == 0
    out = json.loads(capsys.readouterr().out)
    assert out[0]["role"] == "leaf" and out[0]["pem"].startswith("-----BEGIN CERTIFICATE-----")


def test_cli_refuses_plain_url(capsys):
    with pytest.raises(SystemExit) as e:
        main(["pin", "http://127.0.0.1:1/"])
    assert e.value.code == 2
    err = capsys.readouterr().err
    assert "not an https:// URL" in err and "hint:" in err
