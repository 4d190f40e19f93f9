"""Review 2: the consent page. Its form carries the authorization request's parameters as
hidden fields; a parameter named like one of the form's own fields (decision, email,
password) must not ride along. Before, a link with `decision=allow` in its query made a click
on Deny grant the code (the form's first `decision` won), and `email=` chose the account."""

from __future__ import annotations

import re
from urllib.parse import parse_qs, urlencode, urlsplit

from cloudkit import PASSWORD

REDIRECT = "https://my.home-assistant.io/redirect/oauth"


def browser_submits(api, query: dict, email: str, decision: str):
    """What a browser sends when the user signs in and clicks a button: the page's inputs in
    document order (hidden ones, e-mail, password), then the clicked button, posted to the
    page's own URL (the form has no action)."""
    page = api.get("/oauth/authorize", params=query)
    assert page.status_code == 200, page.text
    hidden = re.findall(r'<input type="hidden" name="([^"]*)" value="([^"]*)">', page.text)
    body = hidden + [("email", email), ("password", PASSWORD), ("decision", decision)]
    return api.post("/oauth/authorize?" + urlencode(query), content=urlencode(body),
                    headers={"content-type": "application/x-www-form-urlencoded"}, follow_redirects=False)


def test_deny_is_a_denial_whatever_the_link_carries(api, cloud):
    query = {"response_type": "code", "client_id": cloud.client["client_id"], "redirect_uri": REDIRECT,
             "state": "st-1", "decision": "allow"}
    r = browser_submits(api, query, "owner@example.org", "deny")
    assert r.status_code == 302, r.text
    q = parse_qs(urlsplit(r.headers["location"]).query)
    assert "code" not in q and q["error"] == ["access_denied"] and q["state"] == ["st-1"]


def test_the_link_cannot_choose_the_account(api, cloud):
    query = {"response_type": "code", "client_id": cloud.client["client_id"], "redirect_uri": REDIRECT,
             "state": "st-1", "email": "nobody@example.org", "password": "x"}
    page = api.get("/oauth/authorize", params=query)
    assert 'name="email" value=' not in page.text and 'name="password" value=' not in page.text
    r = browser_submits(api, query, "owner@example.org", "allow")
    assert r.status_code == 302, r.text  # the user's own sign-in counts
    assert "code" in parse_qs(urlsplit(r.headers["location"]).query)


def test_sign_in_pages_may_not_be_framed(api, cloud):
    """RFC 6749 section 10.13: a consent page framed by another site can be clicked through."""
    pages = [api.get("/oauth/authorize", params={"response_type": "code", "client_id": cloud.client["client_id"],
                                                 "redirect_uri": REDIRECT, "state": "s"}),
             api.get("/oauth/device", params={"user_code": "ABCD-EFGH"})]
    for r in pages:
        assert r.status_code == 200
        assert r.headers["x-frame-options"] == "DENY"
        assert "frame-ancestors 'none'" in r.headers["content-security-policy"]
