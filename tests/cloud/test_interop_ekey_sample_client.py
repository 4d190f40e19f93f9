"""ekey's own sample client (`api_operation_sample.py`), unchanged, against `keyhook cloud serve`
on 127.0.0.1: an opt-in check that `make interop` runs.

It needs what the project cannot ship: a checkout of ekey's public repository
`ekey-bionyx-third-party-api-sample-client` (EKEY_SAMPLE_CLIENT=DIR) and a Python with its one
requirement, `requests` (EKEY_SAMPLE_PYTHON, or build/interop/sample-venv made by `make
interop`). Without them the test is skipped, saying so; test_ekey_sample_client.py reproduces the
same requests in every `make test`.

The sample is interactive: it reads its menu choices from standard input and opens the
authorization URL in a web browser. Here standard input is a pipe, and BROWSER names a script
that writes the URL to a file; the test plays the owner's browser (consent page, sign in, allow)
and pastes the redirected URL back, as the sample's README asks. The sample's own files are used
as they are; only Config/config.json, its configuration, is written (this cloud's URLs, a client
registered for it)."""

from __future__ import annotations

import json
import os
import queue
import re
import shutil
import ssl
import subprocess
import sys
import threading
import time
from pathlib import Path

import httpx
import pytest

from keyhook.cloud import admin

from cloudkit import PASSWORD, app_signed_in

pytestmark = pytest.mark.timeout(240)

ROOT = Path(__file__).resolve().parents[2]
SCOPE = "https://ekeybionyxprod.onmicrosoft.com/3rd-party-api/api-access"
REDIRECT = "http://127.0.0.1:9/nativeclient/"  # never followed: the user copies it from the browser


SAMPLE = os.environ.get("EKEY_SAMPLE_CLIENT")
SAMPLE_PYTHON = os.environ.get("EKEY_SAMPLE_PYTHON") or str(ROOT / "build" / "interop" / "sample-venv" / "bin" / "python")


def _missing() -> str | None:
    """Why ekey's sample client cannot be run here, or None (cheap checks, at import)."""
    if not SAMPLE or not (Path(SAMPLE) / "api_operation_sample.py").is_file():
        return ("ekey's sample client is not given: set EKEY_SAMPLE_CLIENT to a checkout of "
                "ekey-bionyx-third-party-api-sample-client (`make interop` explains)")
    if not Path(SAMPLE_PYTHON).exists():
        return f"no Python for the sample client at {SAMPLE_PYTHON}: run `make interop`, or set EKEY_SAMPLE_PYTHON"
    return None


pytestmark = [pytestmark, pytest.mark.skipif(_missing() is not None, reason=str(_missing()))]


class Interactive:
    """The sample's standard input and output, read as it goes."""

    def __init__(self, proc: subprocess.Popen) -> None:
        self.proc, self.out, self._q = proc, "", queue.Queue()
        threading.Thread(target=self._pump, daemon=True).start()

    def _pump(self):
        for ch in iter(lambda: self.proc.stdout.read(1), ""):
            self._q.put(ch)
        self._q.put(None)

    def wait_for(self, pattern: str, timeout: float = 30) -> re.Match:
        """The first match of `pattern` in what the sample printed since the last match (read
        one character at a time: a pattern that ends in a group must end in a newline too)."""
        deadline = time.monotonic() + timeout
        start = len(self.out)
        while True:
            m = re.compile(pattern).search(self.out, start)
            if m:
                return m
            try:
                ch = self._q.get(timeout=max(deadline - time.monotonic(), 0.01))
            except queue.Empty:
                ch = ""
            if ch is None or time.monotonic() > deadline:
                raise AssertionError(f"the sample client never printed {pattern!r}; it printed:\n{self.out}")
            self.out += ch

    def send(self, line: str) -> None:
        self.proc.stdin.write(line + "\n")
        self.proc.stdin.flush()


def test_ekey_sample_client_unchanged(served, cloud, tmp_path):
    src, py = Path(SAMPLE), SAMPLE_PYTHON
    if subprocess.run([py, "-c", "import requests"], capture_output=True).returncode:
        pytest.skip(f"{py} has no `requests` (the sample client's one requirement): run `make interop`")
    work = tmp_path / "sample"
    shutil.copytree(src, work, ignore=shutil.ignore_patterns(".git"))
    client = admin.client_add(cloud.db, "ekey sample client", [REDIRECT])
    (work / "Config" / "config.json").write_text(json.dumps({
        "authorize_url": f"{served.url}/oauth/authorize", "token_url": f"{served.url}/oauth/token",
        "api_url": f"{served.url}/3rd-party/", "scope": SCOPE, "redirect_url": REDIRECT,
        "client_id": client["client_id"], "client_secret": client["client_secret"]}))
    urls = tmp_path / "browser-urls"
    browser = tmp_path / "browser"
    browser.write_text(f'#!/bin/sh\nprintf "%s\\n" "$1" >> "{urls}"\n')
    browser.chmod(0o755)
    app = app_signed_in(tmp_path / "app", served, cloud)
    app.enable("Home")
    samples = sorted(p.name for p in (work / "SampleWebHooks").iterdir())
    assert {"simpleWebHook.json", "fullSample.json"} <= set(samples)

    env = {k: v for k, v in os.environ.items() if not k.lower().endswith("_proxy")}
    env.update(BROWSER=str(browser), REQUESTS_CA_BUNDLE=served.cert, DISPLAY="", PYTHONIOENCODING="utf-8")
    proc = subprocess.Popen([py, "-u", "api_operation_sample.py"], cwd=work, env=env, text=True,
                            stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    io = Interactive(proc)
    try:
        io.wait_for(r"Enter your choice: ")
        io.send("2")  # "I need an access token"
        io.wait_for(r"Paste URL or authorization code here")
        deadline = time.monotonic() + 20
        while not urls.exists() and time.monotonic() < deadline:
            time.sleep(0.1)
        authorize_url = urls.read_text().splitlines()[0]
        assert authorize_url.startswith(f"{served.url}/oauth/authorize?") and "response_mode=query" in authorize_url

        # The owner's browser: consent page, sign in, allow; the redirected URL is pasted back.
        with httpx.Client(verify=ssl.create_default_context(cafile=served.cert), timeout=30) as b:
            page = b.get(authorize_url)
            assert page.status_code == 200, page.text
            hidden = dict(re.findall(r'<input type="hidden" name="([^"]+)" value="([^"]*)">', page.text))
            r = b.post(authorize_url.split("?")[0], data={**hidden, "email": cloud.owner, "password": PASSWORD,
                                                          "decision": "allow"})
        assert r.status_code == 302, r.text
        io.send(r.headers["location"])
        io.wait_for(r"The access token for later use")
        m = io.wait_for(r"Name: (.*) ID: (\S+)\n")
        assert m.groups() == ("Home", cloud.system_id)

        def menu(choice: str):
            io.wait_for(r"Enter 0 for Exit: ")
            io.send(choice)

        def pick(file: str):
            m = io.wait_for(rf"Enter (\d+) for webhook config >{re.escape(file)}<")
            io.wait_for(r"Enter your choice: ")
            io.send(m.group(1))

        menu("1")
        pick("simpleWebHook.json")
        io.wait_for(r"Success\. Webhook created")
        menu("1")
        pick("fullSample.json")
        # Its OAuth2IssuedAccessToken has no access token: refused, the field named.
        io.wait_for(r"Error: 400 : .*definition\.authentication\.accessToken")

        menu("2")
        m = io.wait_for(r"Name: Awesome System 2000 ID: (\S+)\n")
        webhook_id = m.group(1)
        menu("3")
        io.wait_for(r"Enter function webhook ID: ")
        io.send(webhook_id)
        io.wait_for(r"Function webhook data:\s*\{.*'functionName': 'Open Something'")

        menu("5")
        io.wait_for(r"Enter function webhook ID which should be changed: ")
        io.send(webhook_id)
        io.wait_for(r"location name: ")
        io.send("Front door")
        io.wait_for(r"function name: ")
        io.send("Open it")
        io.wait_for(r"successfully updated names\.")

        menu("6")
        io.wait_for(r"Enter function webhook ID which should be updated: ")
        io.send(webhook_id)
        pick("simpleWebHook.json")
        io.wait_for(r"successfully updated - users will be notified!")
        pending = {w["functionWebhookId"]: w for w in app.open_all()}[webhook_id]
        assert pending["modificationState"] == "UpdateRequested"
        assert app.decide(webhook_id, True)["result"] == "updated"

        menu("4")
        io.wait_for(r"Enter function webhook ID which should be deleted: ")
        io.send(webhook_id)
        io.wait_for(r"successfully deleted - users will be notified!")
        assert app.decide(webhook_id, True)["result"] == "deleted"
        menu("2")
        io.wait_for(r"The following function webhooks are in the system:")
        menu("0")
        assert proc.wait(30) == 0
        assert "Traceback" not in io.out, io.out
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
