"""Helpers shared by the scaling tests of the local backend (test_scaling.py) and of Docker (test_scaling_docker.py):
short autoscaler windows, polling with a deadline, the function's status and scale-up count, a load generator, and
the panic step of issue 4's acceptance."""

from __future__ import annotations

import re
import threading
import time
from pathlib import Path

import httpx

from tests.platform_fixture import Platform
from tests.wait_support import wait_until

SHORT = {
    "STOKER_AUTOSCALE_TICK_S": "0.25",
    "STOKER_STABLE_WINDOW_S": "4",
    "STOKER_PANIC_WINDOW_S": "2",
    "STOKER_POOL_SIZE": "2",
}
PANIC_WINDOW_S = float(SHORT["STOKER_PANIC_WINDOW_S"])


def status(p: Platform, name: str) -> dict[str, object]:
    with p.client() as c:
        data: dict[str, object] = c.get(f"/system/function/{name}").json()
        return data


def scale_ups(p: Platform, name: str) -> int:
    text = httpx.get(f"{p.url}/metrics").text
    pattern = rf'stoker_autoscaler_scale_total\{{function_name="{name}\.openfaas-fn",direction="up",[^}}]*\}} (\d+)'
    return sum(int(n) for n in re.findall(pattern, text))


class Load:
    """``clients`` threads calling a function in a loop until stopped; every status code is kept."""

    def __init__(self, url: str, clients: int, params: dict[str, str] | None = None) -> None:
        self.url = url
        self.params = params or {}
        self.statuses: list[int] = []
        self.stopping = threading.Event()
        self.threads = [threading.Thread(target=self._run, daemon=True) for _ in range(clients)]
        for t in self.threads:
            t.start()

    def _run(self) -> None:
        with httpx.Client(timeout=60) as client:
            while not self.stopping.is_set():
                try:
                    self.statuses.append(client.post(self.url, params=self.params, content=b"x").status_code)
                except httpx.TransportError:
                    self.statuses.append(-1)  # a reset or refused connection: the worst outcome

    def stop(self) -> list[int]:
        self.stopping.set()
        for t in self.threads:
            t.join(60)
        return self.statuses


def step_from_one_to_twenty_clients(p: Platform, name: str, folder: Path, ready_timeout: float = 60) -> float:
    """Deploy ``folder`` (a handler that sleeps ``?sleep=`` seconds) as ``name`` with target 4 in-flight per replica,
    hold one client, then step to 20: the autoscaler must enter panic mode and raise the replicas to at least 4 (and
    the new replicas must become ready within ``ready_timeout``), with every call answered 200. Returns the seconds
    from the step to the raised replica count."""
    labels = {"com.openfaas.scale.target": "4", "com.openfaas.scale.max": "6"}
    assert p.deploy(name, folder, labels=labels).status_code == 202
    url = f"{p.url}/function/{name}"
    wait_until(lambda: httpx.post(url, params={"sleep": "0"}, timeout=60).status_code == 200, ready_timeout, "a call")
    one = Load(url, clients=1, params={"sleep": "0.2"})
    codes: list[int] = []
    try:
        time.sleep(1.0)  # load shape, not an assertion: one client for a few ticks
        assert status(p, name)["replicas"] == 1
        step = Load(url, clients=19, params={"sleep": "0.2"})
        stepped = time.monotonic()
        try:
            wait_until(lambda: int(str(status(p, name)["replicas"])) >= 4, 60, "replicas for 20 clients")
            raised_after = time.monotonic() - stepped
            wait_until(lambda: int(str(status(p, name)["availableReplicas"])) >= 4, ready_timeout, "4 ready replicas")
        finally:
            codes += step.stop()
    finally:
        codes += one.stop()
    assert len(codes) > 20
    assert set(codes) == {200}, {c: codes.count(c) for c in set(codes)}
    pattern = rf"{re.escape(name)}\.openfaas-fn: \d+ -> \d+ replicas \(autoscaler: panic"
    assert any(re.search(pattern, line) for line in p.output), "no panic-mode decision in the platform's log"
    return raised_after
