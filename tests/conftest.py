from __future__ import annotations

import os
import socket
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import urlparse

import pytest

from tests.disk_support import small_disk  # noqa: F401 (a fixture: a real small tmpfs for full-disk tests)
from tests.install.install_support import RUN, build_images, untag
from tests.platform_fixture import Platform, start_platform
from tests.redis_support import durable_redis  # noqa: F401 (a fixture: a redis-server a test may kill)

# The services scripts/setup.d installs and starts, each announced by a variable the tests read. Where one is missing
# a test skips (a developer may run the suite without Docker); in CI nothing may skip for that reason.
CI_SERVICES = {
    "STOKER_TEST_DOCKER": "Docker Engine (scripts/setup.d/20-docker.sh)",
    "STOKER_TEST_SWARM": "the local swarm (scripts/setup.d/25-swarm.sh)",
    "STOKER_TEST_REDIS_URL": "redis-server (scripts/setup.d/30-redis.sh)",
}


def in_ci(env: dict[str, str] | os._Environ[str] = os.environ) -> bool:
    return env.get("CI", "").lower() in ("true", "1", "yes")


def missing_ci_services(env: dict[str, str] | os._Environ[str] = os.environ) -> list[str]:
    """What the suite needs but does not have, in CI: unset variables, and a Redis that does not answer."""
    missing = [f"{var} ({what})" for var, what in CI_SERVICES.items() if not env.get(var)]
    url = env.get("STOKER_TEST_REDIS_URL", "")
    if url:
        parsed = urlparse(url)
        try:
            with socket.create_connection((parsed.hostname or "127.0.0.1", parsed.port or 6379), timeout=5) as sock:
                sock.sendall(b"PING\r\n")
                if not sock.recv(16).startswith(b"+PONG"):
                    missing.append(f"STOKER_TEST_REDIS_URL: {url} does not answer PING")
        except OSError as exc:
            missing.append(f"STOKER_TEST_REDIS_URL: {url} unreachable ({exc})")
    return missing


def pytest_sessionstart(session: pytest.Session) -> None:
    if in_ci():
        missing = missing_ci_services()
        if missing:
            pytest.exit("CI=true but services the suite installs are missing: " + "; ".join(missing), returncode=3)


def pytest_runtest_logreport(report: pytest.TestReport) -> None:
    """In CI a test skipped for a missing service fails instead: its service should have been there."""
    if in_ci() and report.skipped and isinstance(report.longrepr, tuple):
        reason = str(report.longrepr[2])
        if any(var in reason for var in CI_SERVICES) or "Docker" in reason or "docker" in reason:
            report.outcome = "failed"
            report.longrepr = f"skipped in CI, where every service must be there: {reason}"


def pytest_terminal_summary(terminalreporter: pytest.TerminalReporter, config: pytest.Config) -> None:
    """The order's seed, also under -q (which hides the header pytest-random-order prints it in)."""
    from random_order.config import Config as RandomOrder  # pytest-random-order's own reading of its options

    order = RandomOrder(config)
    if order.bucket_type != "none":
        terminalreporter.write_line(
            f"random order (bucket {order.bucket_type}): repeat it with --random-order-seed={order.seed}"
        )


@pytest.fixture(scope="module")
def platform(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Platform]:
    """One platform shared by a test module (starting one costs about a second)."""
    p = start_platform(tmp_path_factory.mktemp("stoker-home"), env={"STOKER_MAX_BODY_BYTES": str(1024 * 1024)})
    yield p
    p.stop()


@pytest.fixture(scope="session")
def stack_images() -> Iterator[dict[str, str]]:
    """The runtime, platform and Redis images an install runs (deploy/swarm/build-images.sh), built once per session
    with tags unique to the run and shared by the install and stack tests (a build takes 20-30 s); removed at the
    end."""
    built = build_images(f"test-{RUN}")
    try:
        yield built
    finally:
        untag(built)


@pytest.fixture
def fresh_home(tmp_path: Path) -> Path:
    return tmp_path / "home"
