"""`TlsAllowSelfSigned` and `AllowHttp` only to loopback, link-local or private addresses,
judged on the address resolved at fire time. Proven without a packet leaving the machine: the
resolver answers test names, and any connection attempt to a non-loopback address raises inside
the engine before a socket exists (`guard_connect`)."""

from __future__ import annotations

from kh_engine_helpers import definition, job

ANSWERS = {"remote.test": "203.0.113.7", "lan.test": "192.168.1.20", "ula.test": "fd00::20",
           "v6remote.test": "2001:db8::7", "linklocal.test": "169.254.3.4", "ten.test": "10.1.2.3",
           "cgnat.test": "100.64.0.1", "nxdomain.test": "!fail"}


def test_insecure_levels_refused_to_remote_addresses(batch):
    jobs = []
    for level, scheme in (("TlsAllowSelfSigned", "https"), ("AllowHttp", "http")):
        for host in ("remote.test", "v6remote.test", "cgnat.test", "203.0.113.9", "[2001:db8::1]"):
            jobs.append(job(f"{level}@{host}", definition(f"{scheme}://{host}:8443/x", level)))
    res = batch.run(jobs, resolve=ANSWERS)
    bad = [f"{r['case']}: {r['error']}" for r in res
           if r["error"] != "insecure_remote" or r["connect_attempts"] or r["sent"]]
    assert not bad, bad
    assert "allowInsecureRemote" in res[0]["message"]


def test_private_and_opted_out_destinations_would_connect(batch):
    """The same levels to private addresses, or with the opt-out, go on to connect (the guard
    stops them: reaching it is the proof that the engine did not refuse)."""
    jobs = []
    for host in ("lan.test", "ula.test", "linklocal.test", "ten.test"):
        jobs.append(job(f"private {host}", definition(f"http://{host}:8080/x", "AllowHttp")))
    jobs.append(job("opt-out", definition("https://remote.test/x", "TlsAllowSelfSigned", allowInsecureRemote=True)))
    jobs.append(job("verified level", definition("https://remote.test/x", "TlsWithCACheck")))
    res = batch.run(jobs, resolve=ANSWERS)
    bad = [f"{r['case']}: {r['error']}" for r in res if r["error"] != "guard_connect" or r["connect_attempts"] != 1]
    assert not bad, bad


def test_dns_failure(batch):
    [r] = batch.run([job("nx", definition("https://nxdomain.test/", "TlsWithCACheck"))], resolve=ANSWERS)
    assert r["error"] == "dns" and not r["sent"] and r["connect_attempts"] == 0


def test_resolved_name_is_judged_not_the_text(servers, batch):
    """A name that looks remote but resolves to loopback is fine; the Host header keeps the name."""
    rx = servers.plain()
    [r] = batch.run([job("loop", definition(f"http://looks-public.test:{rx.port}/x", "AllowHttp"))],
                    resolve={"looks-public.test": "127.0.0.1"})
    rx.settle()
    assert r["status"] == 200
    assert rx.requests[0].header("Host") == f"looks-public.test:{rx.port}"


def test_env_carries_its_own_resolver(micropython):
    out = micropython.json("""
        import asyncio, json
        from kh.engine.fire import Env, fire
        from kh.http import resolve
        asked = []
        def answer(host, port):
            asked.append(host)
            return [resolve.literal("203.0.113.7", port)]
        def guard(family, ip, port):
            raise AssertionError("connect attempted")
        resolve.set_connect_guard(guard)
        r = asyncio.run(fire({"method": "Get", "url": "http://env-resolver.test/x", "securityLevel": "AllowHttp"},
                             Env(resolver=answer)))
        print(json.dumps({"error": r["error"], "asked": asked}))
    """)
    assert out == {"error": "insecure_remote", "asked": ["env-resolver.test"]}
