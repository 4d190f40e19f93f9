"""A throw-away PKI for tests and the demo, made with `cryptography`.

`make_pki(outdir)` creates, for `localhost` and `127.0.0.1`:

- ``root`` and ``intermediate`` (signed by root), ``leaf`` (signed by intermediate),
- ``sibling``: a second leaf from the same intermediate,
- ``expired`` and ``not_yet_valid``: leaves from the intermediate outside their dates,
- ``wrong_host``: a leaf from the intermediate for ``other.invalid`` only,
- ``unrelated_root`` with ``unrelated_intermediate`` and ``unrelated_leaf`` (a full chain that
  leads to a root nobody trusts),
- ``self_signed``: a self-signed leaf (not a CA).

Every certificate is written as ``NAME.pem`` and ``NAME.der``, its key as ``NAME.key`` (PEM,
unencrypted), and every leaf also as ``NAME-chain.pem`` (leaf plus the certificates a server
sends with it). Keys are ECDSA P-256, as a small device prefers. Never use these outside tests.
"""

from __future__ import annotations

import datetime as dt
import ipaddress
from dataclasses import dataclass, field
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

LOCAL_NAMES = ("localhost", "127.0.0.1")


@dataclass
class Issued:
    """One certificate with its key and the chain a server presents with it."""

    name: str
    cert: x509.Certificate
    key: ec.EllipticCurvePrivateKey
    chain: list[x509.Certificate] = field(default_factory=list)  # sent after the cert itself
    dir: Path | None = None

    @property
    def der(self) -> bytes:
        return self.cert.public_bytes(serialization.Encoding.DER)

    @property
    def pem(self) -> str:
        return self.cert.public_bytes(serialization.Encoding.PEM).decode()

    @property
    def cert_path(self) -> Path:
        return self._path(".pem")

    @property
    def der_path(self) -> Path:
        return self._path(".der")

    @property
    def key_path(self) -> Path:
        return self._path(".key")

    @property
    def chain_path(self) -> Path:
        """PEM of the certificate followed by its chain (what `load_cert_chain` wants)."""
        return self._path("-chain.pem")

    def _path(self, suffix: str) -> Path:
        if self.dir is None:
            raise ValueError(f"{self.name} has not been written to a directory")
        return self.dir / f"{self.name}{suffix}"


@dataclass
class DevPKI:
    """The whole test PKI; attribute names follow the module docstring."""

    dir: Path
    root: Issued
    intermediate: Issued
    leaf: Issued
    sibling: Issued
    expired: Issued
    not_yet_valid: Issued
    wrong_host: Issued
    unrelated_root: Issued
    unrelated_intermediate: Issued
    unrelated_leaf: Issued
    self_signed: Issued

    def all(self) -> list[Issued]:
        return [getattr(self, n) for n in self.__dataclass_fields__ if n != "dir"]

    def leaf_only(self) -> Issued:
        """The leaf presented without its intermediate (a misconfigured server)."""
        return Issued("leaf_only", self.leaf.cert, self.leaf.key, [], self.leaf.dir)


def _name(cn: str) -> x509.Name:
    return x509.Name([x509.NameAttribute(NameOID.ORGANIZATION_NAME, "keyhook test PKI"),
                      x509.NameAttribute(NameOID.COMMON_NAME, cn)])


def _key() -> ec.EllipticCurvePrivateKey:
    return ec.generate_private_key(ec.SECP256R1())


def _san(hosts: tuple[str, ...]) -> x509.SubjectAlternativeName:
    entries: list[x509.GeneralName] = []
    for h in hosts:
        try:
            entries.append(x509.IPAddress(ipaddress.ip_address(h)))
        except ValueError:
            entries.append(x509.DNSName(h))
    return x509.SubjectAlternativeName(entries)


def _build(subject_cn: str, key, issuer: Issued | None, *, ca: bool, path_len: int | None = None,
           hosts: tuple[str, ...] = (), not_before: dt.datetime, not_after: dt.datetime) -> x509.Certificate:
    subject = _name(subject_cn)
    builder = (x509.CertificateBuilder()
               .subject_name(subject)
               .issuer_name(issuer.cert.subject if issuer else subject)
               .public_key(key.public_key())
               .serial_number(x509.random_serial_number())
               .not_valid_before(not_before)
               .not_valid_after(not_after)
               .add_extension(x509.BasicConstraints(ca=ca, path_length=path_len if ca else None), critical=True)
               .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False))
    if issuer:
        builder = builder.add_extension(
            x509.AuthorityKeyIdentifier.from_issuer_public_key(issuer.key.public_key()), critical=False)
    if ca:
        builder = builder.add_extension(
            x509.KeyUsage(digital_signature=True, content_commitment=False, key_encipherment=False,
                          data_encipherment=False, key_agreement=False, key_cert_sign=True, crl_sign=True,
                          encipher_only=False, decipher_only=False), critical=True)
    else:
        builder = builder.add_extension(
            x509.KeyUsage(digital_signature=True, content_commitment=False, key_encipherment=False,
                          data_encipherment=False, key_agreement=True, key_cert_sign=False, crl_sign=False,
                          encipher_only=False, decipher_only=False), critical=True)
        builder = builder.add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
    if hosts:
        builder = builder.add_extension(_san(hosts), critical=False)
    return builder.sign(issuer.key if issuer else key, hashes.SHA256())


def _write(item: Issued, outdir: Path) -> Issued:
    item.dir = outdir
    (outdir / f"{item.name}.pem").write_text(item.pem)
    (outdir / f"{item.name}.der").write_bytes(item.der)
    key_pem = item.key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                     serialization.NoEncryption())
    kp = outdir / f"{item.name}.key"
    kp.write_bytes(key_pem)
    kp.chmod(0o600)
    chain = item.pem + "".join(c.public_bytes(serialization.Encoding.PEM).decode() for c in item.chain)
    (outdir / f"{item.name}-chain.pem").write_text(chain)
    return item


def make_pki(outdir: str | Path, hosts: tuple[str, ...] = LOCAL_NAMES,
             now: dt.datetime | None = None) -> DevPKI:
    """Create the test PKI in `outdir` (created if missing) and return it."""
    out = Path(outdir)
    out.mkdir(parents=True, exist_ok=True)
    now = now or dt.datetime.now(dt.timezone.utc)
    day = dt.timedelta(days=1)
    long_ago, far = now - 30 * day, now + 365 * day

    def ca(name: str, cn: str, issuer: Issued | None, path_len: int | None) -> Issued:
        k = _key()
        c = _build(cn, k, issuer, ca=True, path_len=path_len, not_before=long_ago, not_after=far)
        return _write(Issued(name, c, k, []), out)

    def leaf(name: str, cn: str, issuer: Issued | None, names: tuple[str, ...], nb=long_ago, na=far,
             chain: list[x509.Certificate] | None = None) -> Issued:
        k = _key()
        c = _build(cn, k, issuer, ca=False, hosts=names, not_before=nb, not_after=na)
        return _write(Issued(name, c, k, chain or []), out)

    root = ca("root", "keyhook test root", None, None)
    inter = ca("intermediate", "keyhook test intermediate", root, 0)
    chain = [inter.cert]
    leaf_ = leaf("leaf", hosts[0], inter, hosts, chain=chain)
    sibling = leaf("sibling", hosts[0], inter, hosts, chain=chain)
    expired = leaf("expired", hosts[0], inter, hosts, nb=now - 60 * day, na=now - 2 * day, chain=chain)
    nyv = leaf("not_yet_valid", hosts[0], inter, hosts, nb=now + 2 * day, na=now + 60 * day, chain=chain)
    wrong = leaf("wrong_host", "other.invalid", inter, ("other.invalid",), chain=chain)
    u_root = ca("unrelated_root", "unrelated test root", None, None)
    u_inter = ca("unrelated_intermediate", "unrelated test intermediate", u_root, 0)
    u_leaf = leaf("unrelated_leaf", hosts[0], u_inter, hosts, chain=[u_inter.cert])
    self_signed = leaf("self_signed", hosts[0], None, hosts)
    return DevPKI(out, root, inter, leaf_, sibling, expired, nyv, wrong, u_root, u_inter, u_leaf, self_signed)


@dataclass
class CrossSigned:
    """A root rollover as public CAs make it (USERTrust, Starfield, GoDaddy): the new root
    ``r2`` also exists as ``r2_cross``, the same name and key issued by the older root ``r1``.
    ``leaf`` (issued by ``intermediate``, which ``r2`` issued) is presented with the chain
    intermediate, r2_cross, as many public servers still send it."""

    r1: Issued
    r2: Issued
    r2_cross: Issued
    intermediate: Issued
    leaf: Issued


def make_cross_signed(outdir: str | Path, hosts: tuple[str, ...] = LOCAL_NAMES, r1_expired: bool = False,
                      now: dt.datetime | None = None) -> CrossSigned:
    """Create the cross-signed chain of `CrossSigned` in `outdir`; `r1_expired` ends the old
    root's validity two days ago (the cross certificate it issued stays valid)."""
    out = Path(outdir)
    out.mkdir(parents=True, exist_ok=True)
    now = now or dt.datetime.now(dt.timezone.utc)
    day = dt.timedelta(days=1)
    nb, na = now - 300 * day, now + 365 * day
    k1, k2, ki, kl = _key(), _key(), _key(), _key()
    r1 = _write(Issued("r1", _build("keyhook old root R1", k1, None, ca=True, not_before=nb,
                                    not_after=now - 2 * day if r1_expired else na), k1), out)
    r2 = _write(Issued("r2", _build("keyhook new root R2", k2, None, ca=True, not_before=nb, not_after=na), k2), out)
    r2x = _write(Issued("r2_cross", _build("keyhook new root R2", k2, r1, ca=True, not_before=nb, not_after=na),
                        k2), out)
    inter = _write(Issued("r2_intermediate", _build("keyhook R2 intermediate", ki, r2, ca=True, path_len=0,
                                                   not_before=nb, not_after=na), ki), out)
    leaf = _write(Issued("r2_leaf", _build(hosts[0], kl, inter, ca=False, hosts=hosts, not_before=nb,
                                          not_after=na), kl, [inter.cert, r2x.cert]), out)
    return CrossSigned(r1, r2, r2x, inter, leaf)


def to_der(pem_or_der: bytes | str) -> list[bytes]:
    """Every certificate in a PEM bundle or a single DER blob, as DER."""
    data = pem_or_der.encode() if isinstance(pem_or_der, str) else pem_or_der
    if b"-----BEGIN" in data:
        return [c.public_bytes(serialization.Encoding.DER) for c in x509.load_pem_x509_certificates(data)]
    return [x509.load_der_x509_certificate(data).public_bytes(serialization.Encoding.DER)]


if __name__ == "__main__":  # pragma: no cover - manual use: python -m keyhook.lab.devpki DIR
    import sys

    pki = make_pki(sys.argv[1] if len(sys.argv) > 1 else "devpki")
    for item in pki.all():
        print(f"{item.name:24} {item.cert_path}")
