"""The device trust store: the DER roots `TlsWithCACheck` may chain to, one file each.

Layout (read by `firmware/kh/http/trust.py`)::

    <outdir>/<h>.der, <outdir>/<h>.1.der, ...   h = hex(sha256(subject Name DER)[:8])
    <outdir>/index.txt                          one line per file: "<file> <subject>" (for people)

The firmware hashes the *issuer* name of the topmost certificate a server sends and opens only
the files for that hash, so mbedTLS never holds more than the roots one connection needs.
"""

from __future__ import annotations

import hashlib
import warnings
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import serialization

from keyhook import KeyhookError


def name_hash(name_der: bytes) -> str:
    """The file-name hash of a DER-encoded X.509 Name (same as the firmware's)."""
    return hashlib.sha256(name_der).digest()[:8].hex()


def write_trust_store(ders: list[bytes], outdir: str | Path) -> dict:
    """Write `ders` (DER certificates) as a trust store in `outdir`; return a summary.

    Duplicates (same DER) are written once; certificates sharing a subject get numbered files.
    Existing `*.der` files in `outdir` are removed first so the store is exactly `ders`.

    Returns ``{"dir": str, "count": int, "bytes": int, "files": [{"file", "subject", "sha256"}]}``.
    """
    out = Path(outdir)
    out.mkdir(parents=True, exist_ok=True)
    for old in out.glob("*.der"):
        old.unlink()
    seen: set[bytes] = set()
    used: dict[str, int] = {}
    files = []
    total = 0
    for der in ders:
        if der in seen:
            continue
        seen.add(der)
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")  # a few public roots have non-positive serials
                cert = x509.load_der_x509_certificate(der)
        except ValueError as e:
            raise KeyhookError(f"not a DER certificate: {e}", hint="pass certificates as DER bytes") from e
        h = name_hash(cert.subject.public_bytes())
        n = used.get(h, 0)
        used[h] = n + 1
        name = f"{h}.der" if n == 0 else f"{h}.{n}.der"
        (out / name).write_bytes(der)
        total += len(der)
        files.append({"file": name, "subject": cert.subject.rfc4514_string(),
                      "sha256": hashlib.sha256(der).hexdigest()})
    (out / "index.txt").write_text("".join(f"{f['file']} {f['subject']}\n" for f in files))
    return {"dir": str(out), "count": len(files), "bytes": total, "files": files}


def load_certificates(path: str | Path) -> list[bytes]:
    """Every certificate in a PEM bundle or DER file, as DER; KeyhookError if there is none."""
    p = Path(path)
    try:
        data = p.read_bytes()
    except OSError as e:
        raise KeyhookError(f"cannot read {p}: {e.strerror}", hint="check the path of the certificate") from e
    try:
        if b"-----BEGIN" in data:
            certs = x509.load_pem_x509_certificates(data)
        else:
            certs = [x509.load_der_x509_certificate(data)]
    except ValueError as e:
        raise KeyhookError(f"{p} holds no readable certificate",
                           hint="give a PEM file with -----BEGIN CERTIFICATE----- blocks, or a DER file") from e
    return [c.public_bytes(serialization.Encoding.DER) for c in certs]


def default_roots() -> list[bytes]:
    """The public roots a device ships with (certifi's Mozilla bundle), as DER."""
    import certifi

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # a few public roots have non-positive serials
        certs = x509.load_pem_x509_certificates(Path(certifi.where()).read_bytes())
    return [c.public_bytes(serialization.Encoding.DER) for c in certs]


def remember_root(der: bytes, directory: str | Path) -> None:
    """Keep a copy of a root this host added to a device, so `trust list` can describe it."""
    d = Path(directory)
    d.mkdir(parents=True, exist_ok=True)
    (d / f"{hashlib.sha256(der).hexdigest()[:16]}.der").write_bytes(der)


def describe_roots(roots: list[dict], remembered: str | Path | None = None) -> list[dict]:
    """`trust.list` entries (`{"id", "added"}`) with `subject` and `expires` (ISO 8601 UTC) when
    this host knows the certificate: a public root, or one it added (`remembered`); else None.

    A device names a root by the hash of its subject (`<h>` or `<h>.<n>`), the same for every
    device, so the subject is exact; with several known roots of one subject, `expires` is the
    latest of them.
    """
    ders = list(default_roots())
    if remembered is not None and Path(remembered).is_dir():
        ders += [p.read_bytes() for p in sorted(Path(remembered).glob("*.der"))]
    by_hash: dict[str, list[x509.Certificate]] = {}
    for der in ders:
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                cert = x509.load_der_x509_certificate(der)
        except ValueError:
            continue
        by_hash.setdefault(name_hash(cert.subject.public_bytes()), []).append(cert)
    out = []
    for r in roots:
        certs = by_hash.get(str(r.get("id", "")).split(".")[0], [])
        subject = certs[0].subject.rfc4514_string() if certs else None
        expires = max(c.not_valid_after_utc for c in certs).strftime("%Y-%m-%dT%H:%M:%SZ") if certs else None
        out.append({**r, "subject": subject, "expires": expires})
    return out
