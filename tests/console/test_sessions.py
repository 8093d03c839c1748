"""The console's login, session cookie, CSRF protection and security headers, seen over HTTP by a real gateway."""

from __future__ import annotations

import re

import httpx

from tests.console.browser import wait_for
from tests.platform_fixture import PASSWORD, Platform

SAME_ORIGIN = {"Sec-Fetch-Site": "same-origin"}


def _login(p: Platform, password: str = PASSWORD, **headers: str) -> httpx.Response:
    with httpx.Client(base_url=p.url, timeout=30) as c:
        return c.post("/ui/login", data={"username": "admin", "password": password}, headers=headers)


def _session(p: Platform) -> tuple[str, str]:
    """Log in; return the session token and the CSRF token from the page."""
    r = _login(p)
    assert r.status_code == 303, r.text
    token = r.cookies.get("stoker_session", path="/ui")
    page = httpx.get(p.url + "/ui/", cookies={"stoker_session": token})
    m = re.search(r'name="csrf-token" content="([^"]+)"', page.text)
    assert m, page.text
    return token, m.group(1)


def test_login_sets_an_httponly_strict_cookie_for_ui_and_system_only(console_platform: Platform) -> None:
    r = _login(console_platform)
    assert r.status_code == 303 and r.headers["location"] == "/ui/"
    cookies = r.headers.get_list("set-cookie")
    assert len(cookies) == 2
    for cookie in cookies:
        assert "HttpOnly" in cookie and "SameSite=Strict" in cookie
    # Never Path=/: a browser must not send the operator's session to /function/ (functions are user code).
    assert sorted(re.search(r"Path=([^;]+)", c).group(1) for c in cookies) == ["/system", "/ui"]  # type: ignore[union-attr]


def test_a_wrong_password_is_refused_without_a_cookie(console_platform: Platform) -> None:
    r = _login(console_platform, "not-the-password")
    assert r.status_code == 401
    assert "Wrong user name or password" in r.text
    assert "set-cookie" not in r.headers
    page = httpx.get(console_platform.url + "/ui/", cookies={"stoker_session": "1.2.3"})
    assert page.status_code == 303 and page.headers["location"] == "/ui/login"


def test_cross_site_login_is_refused(console_platform: Platform) -> None:
    assert _login(console_platform, **{"Sec-Fetch-Site": "cross-site"}).status_code == 403
    assert _login(console_platform, Origin="http://evil.example").status_code == 403


def test_the_session_reads_the_api_and_changes_need_the_csrf_token(console_platform: Platform) -> None:
    token, csrf = _session(console_platform)
    with httpx.Client(base_url=console_platform.url, cookies={"stoker_session": token}, timeout=30) as c:
        assert c.get("/system/functions").status_code == 200
        body = {"serviceName": "echo", "replicas": 1}
        refused = c.post("/system/scale-function/echo", json=body)
        assert refused.status_code == 403 and "CSRF" in refused.json()["error"]
        wrong = c.post("/system/scale-function/echo", json=body, headers={"X-CSRF-Token": csrf[:-2] + "xx"})
        assert wrong.status_code == 403
        cross = c.post(
            "/system/scale-function/echo", json=body, headers={"X-CSRF-Token": csrf, **{"Sec-Fetch-Site": "cross-site"}}
        )
        assert cross.status_code == 403
        ok = c.post("/system/scale-function/echo", json=body, headers={"X-CSRF-Token": csrf, **SAME_ORIGIN})
        assert ok.status_code == 202, ok.text
    # A forged or tampered token is no session; the console's own requests get no basic-auth challenge.
    forged = httpx.get(
        console_platform.url + "/system/functions",
        cookies={"stoker_session": token[:-3] + "abc"},
        headers={"X-CSRF-Token": csrf},
    )
    assert forged.status_code == 401 and "www-authenticate" not in forged.headers


def test_basic_and_bearer_still_work_for_the_console(console_platform: Platform) -> None:
    assert httpx.get(console_platform.url + "/ui/", auth=("admin", PASSWORD)).status_code == 200
    bearer = httpx.get(console_platform.url + "/ui/", headers={"Authorization": f"Bearer {PASSWORD}"})
    assert bearer.status_code == 200
    assert httpx.get(console_platform.url + "/ui/", auth=("admin", "wrong")).status_code == 303


def test_a_change_another_site_makes_with_remembered_basic_credentials_is_refused(console_platform: Platform) -> None:
    body = {"serviceName": "echo", "replicas": 1}
    url = console_platform.url + "/system/scale-function/echo"
    cross = httpx.post(url, json=body, auth=("admin", PASSWORD), headers={"Sec-Fetch-Site": "cross-site"})
    assert cross.status_code == 403 and cross.json() == {"error": "cross-site request refused"}
    assert httpx.post(url, json=body, auth=("admin", PASSWORD)).status_code == 202  # curl, the CLI: as before


def test_logout_needs_the_csrf_token_and_ends_the_cookie(console_platform: Platform) -> None:
    token, csrf = _session(console_platform)
    jar = {"stoker_session": token}
    assert httpx.post(console_platform.url + "/ui/logout", cookies=jar, data={"csrf": "x"}).status_code == 403
    r = httpx.post(console_platform.url + "/ui/logout", cookies=jar, data={"csrf": csrf}, headers=SAME_ORIGIN)
    assert r.status_code == 303
    assert all("Max-Age=0" in c for c in r.headers.get_list("set-cookie"))


def test_every_console_answer_has_a_strict_csp(console_platform: Platform) -> None:
    for path in ("/ui/login", "/ui/static/js/main.js", "/ui/nope", "/ui/"):
        r = httpx.get(console_platform.url + path)
        csp = r.headers["content-security-policy"]
        assert "script-src 'self'" in csp and "unsafe-inline" not in csp and "frame-ancestors 'none'" in csp
        assert r.headers["x-content-type-options"] == "nosniff"
    assert httpx.get(console_platform.url + "/ui/static/../../credentials").status_code == 404
    assert httpx.get(console_platform.url + "/ui/nope").json() == {"error": "no such console page"}


def test_hostile_login_bodies_get_clear_errors(console_platform: Platform) -> None:
    with httpx.Client(base_url=console_platform.url, timeout=30) as c:
        big = c.post("/ui/login", content=b"password=" + b"x" * 10_000)
        assert big.status_code == 413
        many = c.post("/ui/login", content="&".join(f"f{i}=1" for i in range(100)).encode())
        assert many.status_code == 413
        binary = c.post("/ui/login", content=bytes(range(256)))
        assert binary.status_code == 401
        assert c.get("/healthz").status_code == 200


def test_stats_count_calls_and_fill_the_series(console_platform: Platform) -> None:
    with console_platform.client() as c:
        before = {f["name"]: f for f in c.get("/system/stats").json()["functions"]}
        for _ in range(5):
            assert httpx.post(console_platform.url + "/function/hello", content=b"x").status_code == 200

        def counted() -> dict[str, object] | None:
            one = c.get("/system/stats/hello").json()
            return (
                one if one["invocations"] >= before["hello"]["invocations"] + 5 and any(one["series"]["rate"]) else None
            )

        one = wait_for(counted, what="the calls in /system/stats/hello")
        assert len(one["series"]["t"]) == len(one["series"]["p99"]) == len(one["series"]["replicas"])
        assert any(v is not None for v in one["series"]["p99"])
        assert c.get("/system/stats", params={"series": "maybe"}).status_code == 400
        assert c.get("/system/stats/nope").status_code == 404
        assert c.get("/system/stats/BAD_NAME").status_code == 400
        platform = c.get("/system/platform").json()
        assert platform["backend"] == "local" and platform["queue"]["ok"] is True
