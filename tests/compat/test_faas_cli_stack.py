"""faas-cli and stoker's stack files (issue 15, item 6): ``functions/stack.yml`` and what ``stoker new`` writes pass
faas-cli's stack parser (``stack/stack.go: ParseYAMLData``: provider ``openfaas`` or ``faas``; the ``Function``
fields of ``stack/schema.go``), and a function built by ``stoker build`` deploys with the exact requests
``faas-cli deploy -f stack.yml`` sends (``proxy/deploy.go``: a PUT, then a POST when the PUT is 404), on Docker."""

from __future__ import annotations

import contextlib
import json
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import yaml

from runtime.backends.containers import FUNCTION
from tests.docker_support import docker_client
from tests.platform_fixture import FUNCTIONS, ROOT, Platform, start_platform

# faas-cli's stack.Function: YAML field -> the Go type it unmarshals into (stack/schema.go).
FAAS_CLI_FUNCTION = {
    "lang": str, "handler": str, "image": str, "registry_auth": str, "fprocess": str, "environment": dict,
    "secrets": list, "skip_build": bool, "constraints": list, "environment_file": list, "labels": dict,
    "limits": dict, "requests": dict, "readonly_root_filesystem": bool, "build_options": list, "annotations": dict,
    "namespace": str, "build_args": dict, "platforms": str,
}  # fmt: skip
FAAS_CLI_PROVIDERS = ("faas", "openfaas")  # stack/stack.go: providerName, providerNameLong


def faas_cli_problems(text: str) -> list[str]:
    """What faas-cli's ParseYAMLData (and the deploy that follows it) would refuse in a stack file."""
    doc = yaml.safe_load(text)
    problems = []
    if doc.get("provider", {}).get("name") not in FAAS_CLI_PROVIDERS:
        problems.append(f"provider name {doc.get('provider', {}).get('name')!r}")
    if not isinstance(doc.get("version"), str | float | int):
        problems.append("version")
    for name, fn in doc["functions"].items():
        for key, value in fn.items():
            kind = FAAS_CLI_FUNCTION.get(key)
            if kind is None or not isinstance(value, kind):
                problems.append(f"{name}.{key}: {value!r}")
            if kind is dict and not all(isinstance(v, str) for v in value.values()):  # map[string]string
                problems.append(f"{name}.{key} values must be strings: {value!r}")
        for needed in ("lang", "handler", "image"):  # without image faas-cli deploys ":latest"
            if not fn.get(needed):
                problems.append(f"{name} has no {needed}")
    return problems


def stoker(*args: str, cwd: Path, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "stoker", *args], cwd=cwd, env=env, capture_output=True, text=True, timeout=600
    )


def test_the_example_stack_and_stoker_new_pass_faas_clis_parser(tmp_path: Path) -> None:
    assert faas_cli_problems((FUNCTIONS / "stack.yml").read_text()) == []
    for name in ("first", "second"):  # a new file, then an entry added to it
        done = stoker("new", name, "--dir", str(tmp_path), cwd=ROOT)
        assert done.returncode == 0, done.stderr
    text = (tmp_path / "stack.yml").read_text()
    assert faas_cli_problems(text) == []
    assert yaml.safe_load(text)["functions"]["second"]["image"] == "second:latest"
    # The check itself refuses what faas-cli refuses.
    assert faas_cli_problems(text.replace("name: openfaas", "name: stoker")) == ["provider name 'stoker'"]
    assert faas_cli_problems(text.replace("    image: second:latest\n", "")) == ["second has no image"]


@pytest.fixture(scope="module")
def engine() -> Any:
    return docker_client()


@pytest.fixture(scope="module")
def docker_platform(tmp_path_factory: pytest.TempPathFactory, engine: Any) -> Iterator[Platform]:
    p = start_platform(tmp_path_factory.mktemp("compat-faas-cli"), "--backend", "docker", env={"STOKER_POOL_SIZE": "0"})
    yield p
    p.stop(timeout=120)


@pytest.fixture
def built(tmp_path: Path, engine: Any) -> Iterator[dict[str, Any]]:
    """``stoker new`` then ``stoker build`` of a function named for this run; its image tags are removed after."""
    name = f"fc-{uuid.uuid4().hex[:8]}"
    assert stoker("new", name, "--dir", str(tmp_path), cwd=ROOT).returncode == 0
    done = stoker("build", "-f", str(tmp_path / "stack.yml"), "--json", cwd=ROOT)
    assert done.returncode == 0, done.stderr
    (result,) = json.loads(done.stdout)
    yield result
    deadline = time.monotonic() + 90  # the function's containers drain after its DELETE answered
    mine = {"label": f"{FUNCTION}={name}"}
    while engine.containers.list(all=True, sparse=True, filters=mine) and time.monotonic() < deadline:  # no inspect:
        time.sleep(0.2)  # a container removed meanwhile would fail it
    import docker.errors

    for ref in filter(None, (result.get("tagged"), result["image"])):
        with contextlib.suppress(docker.errors.NotFound):  # gone already: nothing of ours left to remove
            engine.images.remove(ref, noprune=False)


def test_faas_cli_deploys_the_image_stoker_build_tagged(
    built: dict[str, Any], docker_platform: Platform, engine: Any
) -> None:
    name = built["name"]
    assert built["tagged"] == f"{name}:latest"  # faas-cli's BuildImageName of the stack's image:
    assert engine.images.get(built["tagged"]).id == engine.images.get(built["image"]).id
    # json.Marshal of faas-provider's FunctionDeployment as faas-cli fills it for this stack entry: envProcess from
    # the python3-http template's template.yml, labels and annotations always set (merged maps), the rest omitempty.
    body = (
        f'{{"service":"{name}","image":"{name}:latest","envProcess":"python index.py","labels":{{}},'
        f'"annotations":{{}}}}'
    ).encode()
    headers = {"Content-Type": "application/json"}
    with docker_platform.client() as c:
        assert c.put("/system/functions", content=body, headers=headers).status_code == 404  # not there yet
        r = c.post("/system/functions", content=body, headers=headers, timeout=120)
        assert r.status_code == 202, r.text
        assert httpx.post(f"{docker_platform.url}/function/{name}", content=b"faas-cli").text == "Hello, faas-cli!\n"
        status = c.get(f"/system/function/{name}").json()
        assert status["image"] == f"{name}:latest" and status["envProcess"] == "python index.py"
        assert status["readOnlyRootFilesystem"] is True  # faas-cli leaves the field out: read-only
        # A second faas-cli deploy is a rolling update: the PUT succeeds.
        assert c.put("/system/functions", content=body, headers=headers, timeout=120).status_code == 202
        assert httpx.post(f"{docker_platform.url}/function/{name}", content=b"again").text == "Hello, again!\n"
        assert c.request("DELETE", "/system/functions", json={"functionName": name}).status_code == 202
