"""``X-Callback-Url``: POST a finished async call's answer to the URL the caller gave, OpenFaaS-style.

Every caller names its own callback URL, so each one is checked like any hostile input (:mod:`stoker.callback_policy`):
at submission (:func:`check_url`: a refused URL is a 400 before anything is queued) and again at delivery, where the
name is resolved anew (off the event loop), every address it resolves to is checked, and the connection goes to the
address that was checked, not to whatever the name resolves to a moment later (DNS rebinding); the request still
carries the URL's own ``Host`` and, for https, its name for SNI and certificate checks. Redirects are not followed: a
3xx answer is reported as such.
"""

from __future__ import annotations

import asyncio
import ipaddress
import socket
import ssl
from dataclasses import dataclass
from urllib.parse import SplitResult, urlsplit

from events.messages import Result
from stoker.callback_policy import CallbackPolicy, IPAddress
from stoker.errors import InvalidRequest

ATTEMPTS = 3
RESOLVE_TIMEOUT_S = 5.0
MAX_URL_BYTES = 2048
DEFAULT_POLICY = CallbackPolicy()
_ALLOW_HINT = "set STOKER_CALLBACK_ALLOW on the platform to allow internal callbacks"


class CallbackRefused(InvalidRequest):
    """The callback URL is not one the gateway may call (400 at submission); the message says why."""


@dataclass(frozen=True)
class Target:
    """A callback URL checked against the policy: where to connect and what to send."""

    url: str
    https: bool
    host: str  # the URL's host name, for Host and SNI
    port: int
    addresses: tuple[str, ...]  # checked addresses it resolved to, in resolver order
    host_header: str
    target: str  # the request target: path and query


def callback_headers(call_id: str, result: Result) -> dict[str, str]:
    """The headers of a callback (and of ``GET /system/async-result``) besides the function's own."""
    return {
        "X-Call-Id": call_id,
        "X-Function-Status": str(result.status),
        "X-Duration-Seconds": f"{result.duration_s:.6f}",
        "X-Function-Name": result.function,
    }


def _split(url: str) -> SplitResult:
    if len(url) > MAX_URL_BYTES:
        raise CallbackRefused(f"X-Callback-Url: longer than {MAX_URL_BYTES} characters")
    if not url.isascii() or not url.isprintable() or " " in url:
        raise CallbackRefused("X-Callback-Url: holds spaces, control or non-ASCII characters")
    try:
        parts = urlsplit(url)
        parts.port  # noqa: B018 -- raises ValueError for a port out of range or not a number
    except ValueError as exc:
        raise CallbackRefused(f"X-Callback-Url: {url!r} is not a URL: {exc}") from None
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise CallbackRefused(f"X-Callback-Url: {url!r} is not an http(s) URL")
    if parts.username is not None or parts.password is not None:
        raise CallbackRefused("X-Callback-Url: credentials in the URL are not accepted")
    return parts


async def check_url(url: str, policy: CallbackPolicy = DEFAULT_POLICY) -> Target:
    """Resolve and check a callback URL; :class:`CallbackRefused` (a 400) when the gateway may not call it."""
    parts = _split(url)
    host = parts.hostname or ""
    https = parts.scheme == "https"
    port = parts.port or (443 if https else 80)
    try:
        literal: IPAddress | None = ipaddress.ip_address(host.split("%", 1)[0])
    except ValueError:
        literal = None
    if literal is not None:
        found = [literal]
    else:
        loop = asyncio.get_running_loop()
        try:
            infos = await asyncio.wait_for(
                loop.getaddrinfo(host, port, type=socket.SOCK_STREAM, proto=socket.IPPROTO_TCP), RESOLVE_TIMEOUT_S
            )
        except (OSError, TimeoutError, UnicodeError) as exc:
            raise CallbackRefused(f"X-Callback-Url: cannot resolve {host!r}: {exc}") from None
        found = list(dict.fromkeys(ipaddress.ip_address(str(info[4][0]).split("%", 1)[0]) for info in infos))
        if not found:
            raise CallbackRefused(f"X-Callback-Url: {host!r} resolves to no address")
    if not policy.host_allowed(host):
        for ip in found:
            reason = policy.address_refusal(ip)
            if reason:
                shown = host if str(ip) == host else f"{host} ({ip})"
                raise CallbackRefused(f"X-Callback-Url: {shown} is {reason}; {_ALLOW_HINT}")
    netloc_host = f"[{host}]" if ":" in host else host
    default_port = 443 if https else 80
    host_header = netloc_host if port == default_port else f"{netloc_host}:{port}"
    target = (parts.path or "/") + (f"?{parts.query}" if parts.query else "")
    return Target(url, https, host, port, tuple(str(ip) for ip in found), host_header, target)


async def _post(target: Target, call_id: str, result: Result, timeout: float) -> int:
    headers = {"Content-Type": result.header("content-type", "application/octet-stream")}
    headers.update(callback_headers(call_id, result))
    head = f"POST {target.target} HTTP/1.1\r\nHost: {target.host_header}\r\n"
    for name, value in headers.items():
        if value.isprintable():  # a value from the function's answer never splits the request
            head += f"{name}: {value}\r\n"
    head += f"Content-Length: {len(result.body)}\r\nConnection: close\r\nUser-Agent: stoker-callback\r\n\r\n"
    context = ssl.create_default_context() if target.https else None
    async with asyncio.timeout(timeout):
        problem: OSError | None = None
        for address in target.addresses:  # only addresses that were checked; never the name again
            try:
                reader, writer = await asyncio.open_connection(
                    address, target.port, ssl=context, server_hostname=target.host if context else None
                )
                break
            except OSError as exc:
                problem = exc
        else:
            raise problem or OSError(f"cannot connect to {target.host}")
        try:
            writer.write(head.encode("latin-1") + result.body)
            await writer.drain()
            line = await reader.readline()
        finally:
            writer.close()
    fields = line.split(None, 2)
    if len(fields) < 2 or not fields[0].startswith(b"HTTP/") or not fields[1].isdigit():
        raise OSError(f"not an HTTP answer: {line[:80]!r}")
    return int(fields[1])


async def post_callback(
    url: str, call_id: str, result: Result, timeout: float = 10.0, *, policy: CallbackPolicy = DEFAULT_POLICY
) -> str | None:
    """Deliver the result; retried on errors and 5xx a few times. Returns None, or why it could not be delivered
    (the result stays available by call id either way). The URL is checked again first (:func:`check_url`)."""
    problem = ""
    for attempt in range(ATTEMPTS):
        try:
            target = await check_url(url, policy)
        except CallbackRefused as exc:
            return f"callback refused: {exc}"
        try:
            status = await _post(target, call_id, result, timeout)
        except (OSError, ValueError, TimeoutError) as exc:
            problem = str(exc) or type(exc).__name__
        else:
            if 300 <= status < 400:
                return f"callback {url} answered {status}; redirects are not followed"
            if status < 500:
                return None if status < 400 else f"callback {url} answered {status}"
            problem = f"answered {status}"
        if attempt + 1 < ATTEMPTS:  # no pause after the last try: the failure is noted at once
            await asyncio.sleep(0.5 * 2**attempt)
    return f"callback {url} failed after {ATTEMPTS} attempts: {problem}"
