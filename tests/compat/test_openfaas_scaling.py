"""Scaling like OpenFaaS CE (issue 15, item 5): the certifier's Test_ScaleUpAndDownFromThroughPut deploys a function
with only ``com.openfaas.scale.min: 1`` and ``.max: 2``, expects 2 replicas under about 10 requests per second, and 1
again a minute after the load ends. See docs/autoscaling.md, "Functions written for OpenFaaS CE"."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from autoscaler.decider import OPENFAAS_CE_WINDOW_S, DeciderSpec
from stoker.config import Config
from stoker.spec import FunctionDeployment
from tests.platform.scaling_support import SHORT, status
from tests.platform_fixture import FUNCTIONS, Platform, start_platform
from tests.wait_support import wait_until


def _settings(labels: dict[str, str]) -> DeciderSpec:
    dep = FunctionDeployment.from_json({"service": "f", "image": "x", "labels": labels})
    return DeciderSpec.from_settings(dep.settings, Config.from_env({}))


def test_which_functions_scale_like_openfaas_ce() -> None:
    ce = _settings({"com.openfaas.scale.min": "1", "com.openfaas.scale.max": "2"})
    assert (ce.target, ce.max_replicas, ce.stable_window_s) == (5, 2, OPENFAAS_CE_WINDOW_S)
    assert FunctionDeployment.from_json({"service": "f", "image": "x", "labels": {"com.openfaas.scale.max": "2"}})\
        .settings.scale_type == "rps"  # fmt: skip
    # No scaling labels at all: stoker's own default (capacity, 10 in flight per replica, the platform's windows).
    plain = _settings({})
    assert (plain.target, plain.stable_window_s) == (10, 60)
    # A type or a target says the function was written for stoker's (or OpenFaaS Pro's) autoscaler: as asked.
    typed = FunctionDeployment.from_json(
        {"service": "f", "image": "x", "labels": {"com.openfaas.scale.max": "2", "com.openfaas.scale.type": "capacity"}}
    ).settings
    assert (typed.scale_type, typed.scale_target, typed.openfaas_ce) == ("capacity", 10, False)
    targeted = _settings({"com.openfaas.scale.max": "2", "com.openfaas.scale.target": "7"})
    assert (targeted.target, targeted.stable_window_s) == (7, 60)


@pytest.fixture
def scaling(tmp_path: Path) -> Iterator[Platform]:
    p = start_platform(tmp_path / "home", env=SHORT)
    yield p
    p.stop()


class Paced:
    """One client calling ``url`` about ``rate`` times a second (the certifier's hey is rate-limited too)."""

    def __init__(self, url: str, rate: float) -> None:
        self.url, self.interval = url, 1 / rate
        self.statuses: list[int] = []
        self.stopping = threading.Event()
        self.thread = threading.Thread(target=self._run, daemon=True)
        self.thread.start()

    def _run(self) -> None:
        with httpx.Client(timeout=30) as client:
            due = time.monotonic()
            while not self.stopping.is_set():
                self.statuses.append(client.post(self.url, content=b"x").status_code)
                due += self.interval
                self.stopping.wait(max(0.0, due - time.monotonic()))  # pacing the load, not synchronising

    def stop(self) -> list[int]:
        self.stopping.set()
        self.thread.join(30)
        return self.statuses


def test_about_ten_requests_a_second_reach_max_2_then_back_to_min(scaling: Platform) -> None:
    bounds = {"com.openfaas.scale.min": "1", "com.openfaas.scale.max": "2"}
    assert scaling.deploy("ce", FUNCTIONS / "hello", labels=bounds).status_code == 202
    assert scaling.deploy("plain", FUNCTIONS / "hello").status_code == 202
    loads = [Paced(f"{scaling.url}/function/{name}", 12) for name in ("ce", "plain")]
    try:
        wait_until(lambda: status(scaling, "ce")["replicas"] == 2, 30, "ce to reach its max of 2 replicas")
        assert status(scaling, "plain")["replicas"] == 1  # capacity: 12 calls/s of 2 ms are far below 10 in flight
    finally:
        answered = [s for load in loads for s in load.stop()]
    assert answered and set(answered) == {200}
    wait_until(lambda: status(scaling, "ce")["replicas"] == 1, 30, "ce back to its min of 1 once the load ended")
