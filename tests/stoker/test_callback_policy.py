"""Which addresses a callback may go to: the pure rule of stoker/callback_policy.py."""

from __future__ import annotations

import ipaddress

import pytest

from stoker.callback_policy import CallbackPolicy, refusal
from stoker.config import Config
from stoker.errors import ConfigError

REFUSED = {
    "0.0.0.0": "unspecified",
    "0.1.2.3": "",  # 0.0.0.0/8: "this network", not routable
    "127.0.0.1": "loopback",
    "127.255.0.9": "loopback",
    "10.1.2.3": "private",
    "172.16.0.1": "private",
    "172.31.255.254": "private",
    "192.168.1.1": "private",
    "169.254.169.254": "link-local",
    "100.64.0.1": "shared",
    "224.0.0.1": "multicast",
    "239.255.255.250": "multicast",
    "240.0.0.1": "reserved",
    "255.255.255.255": "reserved",
    "192.0.2.1": "",  # documentation
    "198.18.0.1": "",  # benchmarking
    "::": "unspecified",
    "::1": "loopback",
    "fd00::1": "unique-local",
    "fc00::1": "unique-local",
    "fe80::1": "link-local",
    "ff02::1": "multicast",
    "::ffff:127.0.0.1": "loopback",
    "::ffff:10.0.0.1": "private",
    "::127.0.0.1": "reserved",  # IPv4-compatible
    "64:ff9b::7f00:1": "reserved",  # NAT64 of 127.0.0.1
    "2002:7f00:1::1": "loopback",  # 6to4 of 127.0.0.1
    "2001:db8::1": "",  # documentation
}
ALLOWED = ["8.8.8.8", "1.1.1.1", "93.184.216.34", "2606:4700:4700::1111", "2a00:1450:4001:80b::200e"]


@pytest.mark.parametrize("address", sorted(REFUSED))
def test_internal_addresses_are_refused(address: str) -> None:
    reason = refusal(ipaddress.ip_address(address))
    assert reason and REFUSED[address] in reason


@pytest.mark.parametrize("address", ALLOWED)
def test_public_addresses_are_allowed(address: str) -> None:
    assert refusal(ipaddress.ip_address(address)) == ""


def test_the_allow_list_takes_hosts_and_cidr_blocks() -> None:
    policy = CallbackPolicy.parse(" hooks.internal, 127.0.0.1 ,10.1.0.0/16,[fd00::]/8,Receiver.Example. ")
    assert policy.host_allowed("HOOKS.internal") and policy.host_allowed("receiver.example")
    assert not policy.host_allowed("other.internal")
    assert policy.address_refusal(ipaddress.ip_address("127.0.0.1")) == ""
    assert policy.address_refusal(ipaddress.ip_address("::ffff:127.0.0.1")) == ""
    assert policy.address_refusal(ipaddress.ip_address("10.1.200.3")) == ""
    assert policy.address_refusal(ipaddress.ip_address("fd12::1")) == ""
    assert "loopback" in policy.address_refusal(ipaddress.ip_address("127.0.0.2"))
    assert "private" in policy.address_refusal(ipaddress.ip_address("10.2.0.1"))
    assert CallbackPolicy.parse("") == CallbackPolicy()


@pytest.mark.parametrize("raw", ["not a host", "a..b", "10.0.0.0/33", "x" * 300, "hö.example"])
def test_a_bad_allow_list_stops_the_platform_naming_the_variable(raw: str) -> None:
    with pytest.raises(ConfigError, match="STOKER_CALLBACK_ALLOW"):
        Config.from_env({"STOKER_CALLBACK_ALLOW": raw, "STOKER_HOME": "/tmp/x"})
