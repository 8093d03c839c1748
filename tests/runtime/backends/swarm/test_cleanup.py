"""``stoker down`` on Swarm (runtime/backends/swarm/cleanup.py, issue 14 item 9) in the real local swarm: the
services, secrets and configs labelled with one platform's name go; another platform's stay."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from runtime.backends.swarm.cleanup import tear_down
from runtime.backends.swarm.config import PLATFORM
from stoker.config import Config
from tests.runtime.backends.swarm.test_support import remove_platform, swarm_engine

pytestmark = pytest.mark.slow


@pytest.fixture
def platforms() -> Iterator[tuple[Any, str, str]]:
    engine = swarm_engine()
    a, b = f"t{uuid.uuid4().hex[:8]}", f"t{uuid.uuid4().hex[:8]}"
    yield engine, a, b
    for p in (a, b):
        remove_platform(engine, p)
    engine.close()


def _make(engine: Any, platform: str) -> None:
    """What a platform's backend makes: a function service, a pool service, a secret, a code config."""
    from docker.types import ContainerSpec, TaskTemplate

    labels = {PLATFORM: platform}
    image = next(i for i in engine.images.list() if i.tags).tags[0]  # never started: any local image does
    for name in (f"{platform}-hello", f"{platform}-pool-1"):
        task = TaskTemplate(ContainerSpec(image, command=["true"]), restart_policy={"Condition": "none"})
        engine.api.create_service(task, name=name, labels=labels, mode={"Replicated": {"Replicas": 0}})
    engine.api.create_secret(f"{platform}-s-1", b"value", labels=labels)
    engine.api.create_config(f"{platform}-hello-code", b"bundle", labels=labels)


def _owned(engine: Any, platform: str) -> list[str]:
    label = {"label": f"{PLATFORM}={platform}"}
    api = engine.api
    return sorted(
        [s["Spec"]["Name"] for s in api.services(filters=label)]
        + [s["Spec"]["Name"] for s in api.secrets(filters=label)]
        + [c["Spec"]["Name"] for c in api.configs(filters=label)]
    )


def test_down_removes_one_platforms_objects_and_not_anothers(
    platforms: tuple[Any, str, str], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    engine, a, b = platforms
    _make(engine, a)
    _make(engine, b)
    b_before = _owned(engine, b)
    assert len(_owned(engine, a)) == 4 and len(b_before) == 4
    monkeypatch.setenv("STOKER_SWARM_PLATFORM", a)
    monkeypatch.setenv("STOKER_SWARM_NETWORK", f"{a}-functions")
    removed = tear_down(Config.from_env({}, home=tmp_path))
    assert _owned(engine, a) == []
    assert f"removed service {a}-hello" in removed and f"removed secret {a}-s-1" in removed
    assert _owned(engine, b) == b_before
