"""The X-Forwarded-* decision (stoker/forwarded.py) and its setting; the behaviour through a real gateway is in
tests/compat/test_invoke_headers.py."""

from __future__ import annotations

import pytest

from stoker.config import Config
from stoker.errors import ConfigError
from stoker.forwarded import TrustedProxies, forwarded

SENT = [(b"x-forwarded-for", b"198.51.100.1"), (b"x-forwarded-for", b"10.0.0.9"), (b"x-forwarded-proto", b"https")]


def test_nobody_is_trusted_by_default() -> None:
    out = dict(forwarded(SENT, b"inner", "10.0.0.2", "http", TrustedProxies.parse("")))
    assert out == {b"x-forwarded-for": b"10.0.0.2", b"x-forwarded-proto": b"http", b"x-forwarded-host": b"inner"}


def test_a_trusted_peer_keeps_its_chain_in_order_and_the_peer_is_appended() -> None:
    trusted = TrustedProxies.parse(" 10.0.0.0/8 , [fd00::1] ")
    out = dict(forwarded(SENT, b"inner", "10.0.0.2", "http", trusted))
    assert out[b"x-forwarded-for"] == b"198.51.100.1, 10.0.0.9, 10.0.0.2"
    assert out[b"x-forwarded-proto"] == b"https" and out[b"x-forwarded-host"] == b"inner"
    assert trusted.trusts("::ffff:10.1.2.3") and trusted.trusts("fd00::1")
    assert not trusted.trusts("11.0.0.1") and not trusted.trusts("") and not trusted.trusts("not-an-address")


def test_a_bad_entry_names_the_variable() -> None:
    with pytest.raises(ConfigError, match=r"STOKER_TRUSTED_PROXIES: 'proxy.example' is not an IP address"):
        Config.from_env({"STOKER_TRUSTED_PROXIES": "127.0.0.1,proxy.example"})
