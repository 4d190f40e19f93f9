"""examples/: every rule file validates, pushes to an onboarded simulated device with the real
`keyhook` command, and fires as written once its URL points at a local server."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from keyhook import rules as rules_mod
from keyhook.paths import REPO

EXAMPLES = sorted((REPO / "examples").glob("*.json"))
KEYHOOK = str(Path(sys.executable).with_name("keyhook"))  # the console script pip installed


def keyhook(*args: str, radio=None, config=None, input: str | None = None) -> subprocess.CompletedProcess:
    env = dict(os.environ)
    if radio is not None:
        env["KEYHOOK_RADIO"] = str(radio)
    if config is not None:
        env["KEYHOOK_CONFIG"] = str(config)
    return subprocess.run([KEYHOOK, *args], env=env, capture_output=True, text=True, timeout=120, input=input)


def test_the_examples_cover_every_level_and_every_authentication():
    levels, auths, pins = set(), set(), set()
    for f in EXAMPLES:
        for w in rules_mod.load_rules(f):
            d = w["definition"]
            levels.add(d.get("securityLevel") or "TlsWithCACheck")
            auths.add((d.get("authentication") or {}).get("apiAuthenticationType", "None"))
            if d.get("securityLevel") == "TlsPinnedCertificate":
                from cryptography import x509
                cert = x509.load_der_x509_certificate(rules_mod.pin_to_der(d["pinnedCertificate"]))
                try:
                    is_ca = cert.extensions.get_extension_for_class(x509.BasicConstraints).value.ca
                except x509.ExtensionNotFound:
                    is_ca = False
                pins.add("ca" if is_ca else "leaf")
    assert levels == set(rules_mod.LEVELS)
    assert auths == set(rules_mod.AUTH_TYPES)
    assert pins == {"ca", "leaf"}


@pytest.mark.parametrize("path", EXAMPLES, ids=[p.name for p in EXAMPLES])
def test_each_example_passes_the_push_validator(path):
    normalised, _warnings = rules_mod.normalise_all(rules_mod.load_rules(path))
    assert normalised and all(r["definition"]["url"].startswith(("http://", "https://")) for r in normalised)


def test_every_example_pushes_to_an_onboarded_simulated_device(paired, keystore):
    dev = paired
    names = []
    for f in EXAMPLES:
        p = keyhook("rules", "push", dev.address, str(f), "--no-check-pins", "--json",
                    radio=dev.radio, config=keystore.root)
        assert p.returncode == 0, f"{f.name}: {p.stdout}{p.stderr}"
        stored = json.loads(p.stdout)["stored"]
        assert stored == [w["functionName"] for w in rules_mod.load_rules(f)]
        names += stored
    p = keyhook("rules", "list", dev.address, "--json", radio=dev.radio, config=keystore.root)
    assert p.returncode == 0, p.stderr
    assert sorted(r["name"] for r in json.loads(p.stdout)) == sorted(names)


def test_the_insecure_examples_fire_as_written_against_local_servers(tmp_path, plain, selfsigned):
    http = json.loads((REPO / "examples" / "allow-http.json").read_text())
    http["definition"]["url"] = plain.url("/buzz?times=2")
    f = tmp_path / "http.json"
    f.write_text(json.dumps(http))
    p = keyhook("fire", str(f))
    assert p.returncode == 0, p.stdout + p.stderr
    assert json.loads(p.stdout)["status"] == 200
    plain.settle()
    assert [(r.method, r.target) for r in plain.requests] == [("GET", "/buzz?times=2")]

    tls = json.loads((REPO / "examples" / "tls-self-signed.json").read_text())
    tls["definition"]["url"] = selfsigned.url("/hook/sprinkler")
    f = tmp_path / "self.json"
    f.write_text(json.dumps(tls))
    p = keyhook("fire", str(f))
    assert p.returncode == 0, p.stdout + p.stderr
    selfsigned.settle()
    [req] = selfsigned.requests
    assert (req.method, req.target, req.body) == ("PUT", "/hook/sprinkler", b"on")
    assert req.header("X-Api-Key") == "replace-me"


def test_the_repository_points_nowhere_outside_itself():
    # The docs, code and tests explain themselves; nothing refers to files outside it.
    NEEDLES = ["shared" + "/spec", "shared" + "/DESIGN", "../" + "shared", "micropython" + "-facts"]
    offenders = []
    for path in REPO.rglob("*"):
        if any(part in (".venv", ".git", "node_modules", "__pycache__", "build") or part.endswith(".egg-info")
               for part in path.relative_to(REPO).parts) or not path.is_file():
            continue
        if path.suffix not in (".py", ".md", ".json", ".txt", ".toml", ".ini", ""):
            continue
        try:
            text = path.read_text()
        except (UnicodeDecodeError, OSError):
            continue
        if any(needle in text for needle in NEEDLES):
            offenders.append(str(path.relative_to(REPO)))
    assert offenders == [], offenders
