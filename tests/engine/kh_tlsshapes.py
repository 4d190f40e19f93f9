"""TLS servers on 127.0.0.1 in the shapes the device's TLS library (mbedTLS: TLS 1.2, ECDHE on
P-256/384/521, AES suites, no RSA-PSS) cannot talk to, each as public servers are configured:
TLS 1.3 only, X25519 only, ChaCha20 only, DHE only, a chain signed with RSA-PSS, and a private
CA with critical name constraints."""

from __future__ import annotations

import datetime as dt
import ipaddress
import ssl
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import dh, ec, padding, rsa
from cryptography.x509.oid import NameOID

from keyhook.lab.devpki import DevPKI


def _modp2048() -> int:
    """RFC 3526 group 14: p = 2^2048 - 2^1984 - 1 + 2^64 * (floor(2^1918 * pi) + 124476)."""
    # pi by Machin's formula in fixed point, 700 decimal digits (2^1918 needs about 578)
    scale = 10 ** 700

    def arctan_inv(x: int) -> int:
        total, term, k, sign = 0, scale // x, 1, 1
        x2 = x * x
        while term:
            total += sign * term // k
            term //= x2
            k += 2
            sign = -sign
        return total
    pi = 4 * (4 * arctan_inv(5) - arctan_inv(239))
    return 2 ** 2048 - 2 ** 1984 - 1 + 2 ** 64 * ((2 ** 1918 * pi) // scale + 124476)


def _dh_params(path: Path) -> Path:
    params = dh.DHParameterNumbers(_modp2048(), 2).parameters()
    path.write_bytes(params.parameter_bytes(serialization.Encoding.PEM, serialization.ParameterFormat.PKCS3))
    return path


def _now():
    return dt.datetime.now(dt.timezone.utc)


def _cert(subject: str, key, issuer_name: x509.Name | None, issuer_key, *, ca: bool, hosts=(), pss=False,
          constraints: x509.NameConstraints | None = None) -> x509.Certificate:
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, subject)])
    b = (x509.CertificateBuilder().subject_name(name).issuer_name(issuer_name or name)
         .public_key(key.public_key()).serial_number(x509.random_serial_number())
         .not_valid_before(_now() - dt.timedelta(days=1)).not_valid_after(_now() + dt.timedelta(days=30))
         .add_extension(x509.BasicConstraints(ca=ca, path_length=None), critical=True))
    if hosts:
        sans = []
        for h in hosts:
            try:
                sans.append(x509.IPAddress(ipaddress.ip_address(h)))
            except ValueError:
                sans.append(x509.DNSName(h))
        b = b.add_extension(x509.SubjectAlternativeName(sans), critical=False)
    if constraints is not None:
        b = b.add_extension(constraints, critical=True)
    if pss:
        return b.sign(issuer_key, hashes.SHA256(),
                      rsa_padding=padding.PSS(mgf=padding.MGF1(hashes.SHA256()), salt_length=32))
    return b.sign(issuer_key, hashes.SHA256())


def _write(d: Path, name: str, certs: list[x509.Certificate], key) -> tuple[Path, Path]:
    chain = d / f"{name}-chain.pem"
    chain.write_bytes(b"".join(c.public_bytes(serialization.Encoding.PEM) for c in certs))
    kp = d / f"{name}.key"
    kp.write_bytes(key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                     serialization.NoEncryption()))
    (d / f"{name}.pem").write_bytes(certs[0].public_bytes(serialization.Encoding.PEM))
    return chain, kp


class Shapes:
    """Server contexts by shape name; `root_pem(shape)` is the root a client would trust."""

    NAMES = ("tls13_only", "x25519_only", "chacha20_only", "dhe_only", "rsa_pss_chain", "name_constrained")

    def __init__(self, pki: DevPKI, outdir: Path):
        self.pki = pki
        self.dir = Path(outdir)
        self.dir.mkdir(parents=True, exist_ok=True)
        self.roots: dict[str, x509.Certificate] = {}

    def root_pem(self, shape: str) -> str:
        c = self.roots.get(shape, self.pki.root.cert)
        return c.public_bytes(serialization.Encoding.PEM).decode()

    def root_der(self, shape: str) -> bytes:
        return self.roots.get(shape, self.pki.root.cert).public_bytes(serialization.Encoding.DER)

    def context(self, shape: str) -> ssl.SSLContext:
        ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        leaf = self.pki.leaf
        chain, key = leaf.chain_path, leaf.key_path
        if shape != "tls13_only":
            ctx.maximum_version = ssl.TLSVersion.TLSv1_2
        if shape == "tls13_only":
            ctx.minimum_version = ssl.TLSVersion.TLSv1_3
        elif shape == "x25519_only":
            ctx.set_ecdh_curve("X25519")
        elif shape == "chacha20_only":
            ctx.set_ciphers("ECDHE-ECDSA-CHACHA20-POLY1305")
        elif shape == "dhe_only":
            rk = rsa.generate_private_key(65537, 2048)
            c = _cert("localhost", rk, self.pki.intermediate.cert.subject, self.pki.intermediate.key, ca=False,
                      hosts=("localhost", "127.0.0.1"))
            chain, key = _write(self.dir, "dhe", [c, self.pki.intermediate.cert], rk)
            ctx.set_ciphers("DHE-RSA-AES128-GCM-SHA256")
            ctx.load_dh_params(str(_dh_params(self.dir / "dh.pem")))
        elif shape == "rsa_pss_chain":
            rk = rsa.generate_private_key(65537, 2048)
            root = _cert("keyhook RSA-PSS root", rk, None, rk, ca=True, pss=True)
            lk = ec.generate_private_key(ec.SECP256R1())
            c = _cert("localhost", lk, root.subject, rk, ca=False, hosts=("localhost", "127.0.0.1"), pss=True)
            chain, key = _write(self.dir, "pss", [c], lk)
            self.roots[shape] = root
        elif shape == "name_constrained":
            rk = ec.generate_private_key(ec.SECP256R1())
            nc = x509.NameConstraints(permitted_subtrees=[
                x509.DNSName("localhost"), x509.DNSName("home.arpa"),
                x509.IPAddress(ipaddress.ip_network("127.0.0.0/8"))], excluded_subtrees=None)
            root = _cert("keyhook private CA", rk, None, rk, ca=True, constraints=nc)
            lk = ec.generate_private_key(ec.SECP256R1())
            c = _cert("localhost", lk, root.subject, rk, ca=False, hosts=("localhost", "127.0.0.1"))
            chain, key = _write(self.dir, "nc", [c], lk)
            (self.dir / "nc-root.pem").write_bytes(root.public_bytes(serialization.Encoding.PEM))
            self.roots[shape] = root
        ctx.load_cert_chain(str(chain), str(key))
        return ctx
