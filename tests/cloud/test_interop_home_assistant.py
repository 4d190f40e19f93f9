"""Home Assistant's `ekeybionyx` integration itself, unchanged, against `keyhook cloud serve` on
127.0.0.1: an opt-in check that `make interop` runs.

Home Assistant needs Python 3.13 or later, which the project's own environment does not have:
it runs in a root file system of its own (KEYHOOK_HA_ROOT, default build/ha-root, made by `make
interop-ha-runtime`: Debian 13, Home Assistant with its test harness
pytest-homeassistant-custom-component, ekey-bionyxpy), entered with chroot, so as root. Without
it the test is skipped, saying why; test_home_assistant.py reproduces the integration's calls in
every `make test`.

This side serves the cloud, registers Home Assistant as an OAuth client and enables the
integration in the app; `ha_side/ekeybionyx_flow.py`, run by Home Assistant's pytest in that root,
drives the integration's config flow and its setup through Home Assistant's own OAuth 2.0
implementation, and plays the owner (browser consent, approvals). Afterwards this side checks
what the owner's app sees."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import uuid
from pathlib import Path

import pytest

from keyhook.cloud import admin

from cloudkit import PASSWORD, app_signed_in

pytestmark = pytest.mark.timeout(600)

ROOT = Path(__file__).resolve().parents[2]
HA_SIDE = Path(__file__).resolve().parent / "ha_side" / "ekeybionyx_flow.py"
REDIRECT = "https://example.com/auth/external/callback"  # Home Assistant's own, as its test harness sets it


CHROOT = shutil.which("chroot") or "/usr/sbin/chroot"
HA_ROOT = Path(os.environ.get("KEYHOOK_HA_ROOT") or ROOT / "build" / "ha-root")


def _missing() -> str | None:
    """Why the Home Assistant runtime cannot be used here, or None (cheap checks, at import)."""
    if not os.path.lexists(HA_ROOT / "opt" / "ha" / "bin" / "python"):  # a link into the root
        return (f"no Home Assistant runtime in {HA_ROOT} (Home Assistant needs Python >= 3.13): "
                "`make interop-ha-runtime` makes one, or set KEYHOOK_HA_ROOT")
    if os.getuid() != 0 or not os.path.exists(CHROOT):
        return "Home Assistant runs in its own root file system, entered with chroot: run as root"
    return None


pytestmark = [pytestmark, pytest.mark.skipif(_missing() is not None, reason=str(_missing()))]


def test_home_assistant_integration_unchanged(served, cloud, tmp_path, backend):
    if backend != "sqlite":
        pytest.skip("one backend is enough for the client's side (test_api covers PostgreSQL)")
    root = HA_ROOT
    probe = subprocess.run([CHROOT, str(root), "/opt/ha/bin/python", "-c",
                            "import homeassistant.components.ekeybionyx, pytest_homeassistant_custom_component"],
                           capture_output=True, text=True)
    if probe.returncode:
        pytest.skip(f"the Home Assistant runtime in {root} is incomplete: {probe.stderr.strip()[-300:]}")
    client = admin.client_add(cloud.db, "Home Assistant", [REDIRECT])
    app = app_signed_in(tmp_path / "app", served, cloud)
    app.enable("Home")

    stage = Path("/tmp") / f"keyhook-interop-{uuid.uuid4().hex[:8]}"  # inside the root
    host_stage = root / stage.relative_to("/")
    host_stage.mkdir(parents=True)
    try:
        shutil.copy(HA_SIDE, host_stage / "test_ekeybionyx_flow.py")
        shutil.copy(served.cert, host_stage / "cloud-cert.pem")
        (host_stage / "cloud.json").write_text(json.dumps({
            "url": served.url, "cafile": str(stage / "cloud-cert.pem"), "client_id": client["client_id"],
            "client_secret": client["client_secret"], "email": cloud.owner, "password": PASSWORD,
            "system_id": cloud.system_id, "app_token": admin.token_issue(cloud.db, cloud.owner, admin.APP_CLIENT_ID)[
                "access_token"]}))
        # REQUESTS_CA_BUNDLE: the certificates Home Assistant's SSL helper trusts.
        env = {"PATH": "/usr/bin:/bin", "HOME": "/root", "KEYHOOK_INTEROP": str(stage / "cloud.json"),
               "REQUESTS_CA_BUNDLE": str(stage / "cloud-cert.pem"), "LANG": "C.UTF-8"}
        run = subprocess.run([CHROOT, str(root), "/opt/ha/bin/python", "-m", "pytest", "-x", "-q", "-rs",
                              "-p", "no:cacheprovider", "-o", "asyncio_mode=auto", "-o", "addopts=",
                              f"--rootdir={stage}", str(stage / "test_ekeybionyx_flow.py")],
                             env=env, capture_output=True, text=True, timeout=540)
        assert run.returncode == 0, run.stdout[-6000:] + run.stderr[-3000:]
        assert " passed" in run.stdout and " failed" not in run.stdout, run.stdout[-3000:]
        print(run.stdout[-2000:])  # Home Assistant's own pytest summary, for -s
    finally:
        shutil.rmtree(host_stage, ignore_errors=True)

    # What the owner's app sees: Home Assistant's webhooks, sealed, opening to what it sent.
    hooks = app.open_all()
    assert [h["functionName"] for h in hooks] == ["Garage"]  # "Front door" was deleted by the second flow
    h = hooks[0]
    assert h["integrationName"] == "Home Assistant" and h["locationName"] == "Home Assistant"
    d = h["definition"]
    assert d["securityLevel"] == "AllowHttp" and d["authentication"]["apiAuthenticationType"] == "None"
    assert d["url"].startswith("http://127.0.0.1:8123/api/webhook/") and json.loads(d["body"]["content"]).keys() == {"auth"}
