"""Where the gateway may send a callback (``X-Callback-Url``): the pure decision, with no I/O.

The gateway POSTs function output to a URL any caller names, so without a rule every caller could make it talk to
services only it can reach: Redis on loopback, a cloud metadata endpoint, the private network. By default a callback
may go only to a globally routable unicast address. Refused, after the name is resolved (so ``localhost``,
``0x7f000001``, ``2130706433``, ``0177.0.0.1`` and ``127.1`` are all 127.0.0.1):

- IPv4: unspecified (0.0.0.0/8), loopback (127/8), private (10/8, 172.16/12, 192.168/16), link-local
  (169.254/16: cloud metadata), shared address space (100.64/10), multicast (224/4), reserved (240/4 and the
  broadcast address), and the other special-purpose ranges that are not globally routable (documentation, benchmarks);
- IPv6: unspecified (::), loopback (::1), unique-local (fc00::/7), link-local (fe80::/10), multicast (ff00::/8),
  reserved ranges (including IPv4-compatible ``::a.b.c.d`` and NAT64 ``64:ff9b::/96``), and addresses that embed an
  IPv4 address (mapped ``::ffff:a.b.c.d``, 6to4 ``2002::/16``, Teredo) are judged by that IPv4 address.

``STOKER_CALLBACK_ALLOW`` lists exceptions for deployments that need internal callbacks, comma-separated: a host
name (the URL's host, exactly, any case) or an address or CIDR block (``10.1.0.0/16``, ``127.0.0.1``, ``fd00::/8``)
that the resolved address must fall in. Only ``http`` and ``https`` URLs without credentials or control characters
are accepted at all.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Iterable
from dataclasses import dataclass

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address
IPNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network
_UNIQUE_LOCAL = ipaddress.IPv6Network("fc00::/7")
_SHARED = ipaddress.IPv4Network("100.64.0.0/10")


def refusal(ip: IPAddress) -> str:
    """Why a callback may not go to ``ip`` by default ("" when it may): "a loopback address", ..."""
    if isinstance(ip, ipaddress.IPv6Address):
        embedded = ip.ipv4_mapped or ip.sixtofour or (ip.teredo[1] if ip.teredo else None)
        if embedded is not None:
            inner = refusal(embedded)
            return f"{inner} (as {embedded}, embedded in this IPv6 address)" if inner else ""
    if ip.is_unspecified:
        return "the unspecified address"
    if ip.is_loopback:
        return "a loopback address"
    if ip.is_link_local:
        return "a link-local address"
    if ip.is_multicast:
        return "a multicast address"
    if isinstance(ip, ipaddress.IPv6Address) and ip in _UNIQUE_LOCAL:
        return "a unique-local address"
    if isinstance(ip, ipaddress.IPv4Address) and ip in _SHARED:
        return "a shared (carrier-grade NAT) address"
    if ip.is_reserved:
        return "a reserved address"
    if ip.is_private:
        return "a private address"
    if not ip.is_global:
        return "not a globally routable address"
    return ""


@dataclass(frozen=True)
class CallbackPolicy:
    """The default rule plus the ``STOKER_CALLBACK_ALLOW`` exceptions."""

    hosts: frozenset[str] = frozenset()
    networks: tuple[IPNetwork, ...] = ()

    @classmethod
    def parse(cls, raw: str) -> CallbackPolicy:
        """From the setting's text; ValueError naming the entry that is neither a host name nor an address/CIDR."""
        hosts: set[str] = set()
        networks: list[IPNetwork] = []
        for entry in (e.strip() for e in raw.split(",")):
            if not entry:
                continue
            try:
                networks.append(parse_network(entry))
                continue
            except ValueError:
                pass
            host = entry.lower().rstrip(".")
            labels = host.split(".")
            if not host or len(host) > 253 or not all(_is_label(label) for label in labels):
                raise ValueError(f"{entry!r} is neither a host name nor an IP address or CIDR block")
            hosts.add(host)
        return cls(frozenset(hosts), tuple(networks))

    def host_allowed(self, host: str) -> bool:
        """Whether the URL's host is listed by name (any address it resolves to is then accepted)."""
        return host.lower().rstrip(".") in self.hosts

    def address_refusal(self, ip: IPAddress) -> str:
        """Why ``ip`` is refused ("" when it is allowed: globally routable, or in a listed block)."""
        reason = refusal(ip)
        if not reason:
            return ""
        return "" if listed(ip, self.networks) else reason


def parse_network(entry: str) -> IPNetwork:
    """An address or CIDR block of a setting's list (``10.1.0.0/16``, ``127.0.0.1``, ``[fd00::1]``); ValueError when it
    is neither. Host bits may be set (``10.1.2.3/16`` is ``10.1.0.0/16``)."""
    return ipaddress.ip_network(entry.replace("[", "").replace("]", ""), strict=False)


def listed(ip: IPAddress, networks: Iterable[IPNetwork]) -> bool:
    """Whether ``ip`` falls in one of ``networks``; an IPv4-mapped IPv6 address (``::ffff:a.b.c.d``, how a dual-stack
    socket shows an IPv4 peer) also by its IPv4 address."""
    candidates: list[IPAddress] = [ip]
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
        candidates.append(ip.ipv4_mapped)
    return any(c in n for c in candidates for n in networks if n.version == c.version)


def _is_label(label: str) -> bool:
    return 0 < len(label) <= 63 and all(c.isalnum() or c in "-_" for c in label) and label.isascii()
