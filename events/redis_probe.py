"""Check at start that the Redis a platform is told to use answers, so a wrong URL fails ``stoker up`` (and
``stoker controller``) at once with one clear line instead of starting and retrying every second.

A refused connection is retried for a few seconds (a Redis started beside the platform, as compose does, may not listen
yet); a wrong password or a malformed URL fails at once. The URL's password never appears in a message.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from urllib.parse import urlsplit, urlunsplit

import redis
import redis.exceptions as rexc

from stoker.errors import ConfigError

START_WAIT_S = 5.0


def redacted(url: str) -> str:
    """``url`` with the password (if any) replaced by ``***``."""
    try:
        parts = urlsplit(url)
        if parts.password is None:
            return url
        user = parts.username or ""
        host = parts.netloc.rpartition("@")[2]
        return urlunsplit(parts._replace(netloc=f"{user}:***@{host}"))
    except ValueError:
        return "(the URL given)"


def check_redis(
    url: str,
    source: str,
    wait_s: float = START_WAIT_S,
    clock: Callable[[], float] = time.monotonic,
    sleep: Callable[[float], None] = time.sleep,
) -> None:
    """Ping the Redis at ``url``; ConfigError naming ``source`` (the flag or variable it came from) if it cannot be
    used."""
    where = f"{source}: cannot use Redis at {redacted(url)}"
    try:
        client = redis.Redis.from_url(url, socket_connect_timeout=2, socket_timeout=5)
    except ValueError as exc:  # not a URL redis-py understands: scheme, port, database number
        raise ConfigError(f"{where}: {exc}") from None
    deadline = clock() + wait_s
    try:
        while True:
            try:
                client.ping()
                return
            except rexc.AuthenticationError as exc:
                if not client.connection_pool.connection_kwargs.get("password"):
                    raise ConfigError(
                        f"{where}: it needs a password (redis://:PASSWORD@host:port/db); Authentication required"
                    ) from None
                raise ConfigError(f"{where}: the password is wrong ({_line(exc)})") from None
            except rexc.ResponseError as exc:  # NOAUTH and the like: Redis answered, and said no
                raise ConfigError(f"{where}: {_line(exc)}") from None
            except (rexc.ConnectionError, rexc.TimeoutError) as exc:
                if clock() >= deadline:
                    raise ConfigError(f"{where}: {_line(exc)} (is Redis running there?)") from None
                sleep(0.2)
            except (rexc.RedisError, ValueError, OSError) as exc:
                raise ConfigError(f"{where}: {_line(exc)}") from None
    finally:
        client.close()


def _line(exc: BaseException) -> str:
    text = " ".join(str(exc).split())
    return text.rstrip(".") or type(exc).__name__
