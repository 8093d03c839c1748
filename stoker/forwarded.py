"""The ``X-Forwarded-*`` headers a function receives: the pure decision, with no I/O.

The gateway sets ``X-Forwarded-For`` (the address of its peer), ``X-Forwarded-Proto`` (the scheme it was called
with) and ``X-Forwarded-Host`` (the ``Host`` the client asked for) on every ``/function/`` and ``/async-function/``
call, as Traefik does. What a client sent under those names is only as true as the client, so:

- from a peer listed in ``STOKER_TRUSTED_PROXIES`` (a proxy in front of the gateway), its ``X-Forwarded-Proto`` and
  ``-Host`` are kept and the peer's address is appended to its ``X-Forwarded-For`` (``client, proxy``);
- from any other peer (the default: nobody is trusted), the three are replaced by what the gateway saw itself, so a
  function never reads an address, scheme or host a client made up.
"""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass

from stoker.callback_policy import IPNetwork, listed, parse_network

FOR, PROTO, HOST = b"x-forwarded-for", b"x-forwarded-proto", b"x-forwarded-host"
NAMES = frozenset((FOR, PROTO, HOST))
_SCHEMES = {"http": b"http", "https": b"https"}


@dataclass(frozen=True)
class TrustedProxies:
    """The ``STOKER_TRUSTED_PROXIES`` addresses and CIDR blocks."""

    networks: tuple[IPNetwork, ...] = ()

    @classmethod
    def parse(cls, raw: str) -> TrustedProxies:
        """From the setting's text (comma-separated); ValueError naming an entry that is no address or CIDR block."""
        networks: list[IPNetwork] = []
        for entry in (e.strip() for e in raw.split(",")):
            if not entry:
                continue
            try:
                networks.append(parse_network(entry))
            except ValueError:
                raise ValueError(f"{entry!r} is not an IP address or CIDR block") from None
        return cls(tuple(networks))

    def trusts(self, peer: str) -> bool:
        """Whether the gateway's peer (its address as the server saw it) is a listed proxy."""
        if not self.networks or not peer:
            return False
        try:
            ip = ipaddress.ip_address(peer)
        except ValueError:  # a Unix socket peer has no address
            return False
        return listed(ip, self.networks)


def forwarded(
    sent: list[tuple[bytes, bytes]], host: bytes, peer: str, scheme: str, trusted: TrustedProxies
) -> list[tuple[bytes, bytes]]:
    """The three headers to pass on, from the ``X-Forwarded-*`` headers the client ``sent`` (name lower-case, in
    order), its ``Host``, the gateway's ``peer`` address and ``scheme``. Repeated headers from a trusted proxy are
    joined with ``, `` in order (as HTTP defines for lists)."""
    if not sent or not trusted.networks:  # the usual case, on the invoke path: kept short
        if host:
            return [(FOR, peer.encode()), (PROTO, _SCHEMES.get(scheme) or scheme.encode()), (HOST, host)]
        return [(FOR, peer.encode()), (PROTO, _SCHEMES.get(scheme) or scheme.encode())]
    chain, proto, fhost = b"", scheme.encode(), host
    if trusted.trusts(peer):
        fors = [v for k, v in sent if k == FOR]
        chain = b", ".join(fors) + b", " if fors else b""
        protos = [v for k, v in sent if k == PROTO]
        hosts = [v for k, v in sent if k == HOST]
        proto = protos[0] if protos else proto
        fhost = hosts[0] if hosts else fhost
    out = [(FOR, chain + peer.encode()), (PROTO, proto)]
    if fhost:
        out.append((HOST, fhost))
    return out
