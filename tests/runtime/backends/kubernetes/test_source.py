"""Source deploys on Kubernetes: the signed bundle in a ConfigMap, run by the runtime image (against the fake)."""

from __future__ import annotations

import asyncio
import base64
import os
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from runtime import codesign
from runtime.backends.kubernetes import code as k8s_code
from runtime.backends.kubernetes import objects
from runtime.backends.kubernetes.backend import KubernetesBackend
from runtime.backends.kubernetes.settings import KubeSettings
from stoker import bundle
from stoker.config import Config
from stoker.errors import DeployFailed, InvalidRequest
from stoker.spec import FunctionDeployment
from tests.fakes.kubernetes import FakeCluster, validate
from tests.runtime.backends.kubernetes.test_backend import NS, addresses, pod_ips, until

KEY = b"p" * 32
RUNTIME = "registry.example/stoker-runtime:7"
pytestmark = pytest.mark.timeout(60)


def source(tmp_path: Path, text: str = "def handle(event, context):\n    return 'hi'\n", **files: str) -> bytes:
    folder = tmp_path / f"fn-{abs(hash((text, tuple(files.items()))))}"
    folder.mkdir()
    (folder / "handler.py").write_text(text)
    for name, content in files.items():
        (folder / name).write_text(content)
    return bundle.pack(folder)


def dep(name: str = "hello", **fields: object) -> FunctionDeployment:
    return FunctionDeployment.from_json({"service": name, **fields}, require_code=False)


@pytest.fixture
async def backend(cluster: FakeCluster, tmp_path: Path) -> AsyncIterator[KubernetesBackend]:
    config = Config.from_env({}, home=tmp_path, k8s_deploy_timeout_s=2.0, drain_timeout_s=5.0)
    b = KubernetesBackend(config, KEY, cluster.clients(), poll_s=0.02, settings=KubeSettings(runtime_image=RUNTIME))
    await b.start()
    yield b
    await b.close()


def configmaps(cluster: FakeCluster) -> dict[str, bytes]:
    return {n: base64.b64decode(c["binaryData"]["bundle.tar.gz"]) for n, c in cluster.objects["configmaps"].items()}


async def test_a_source_deploy_runs_the_runtime_image_with_its_signed_bundle_from_a_configmap(
    backend: KubernetesBackend, cluster: FakeCluster, tmp_path: Path
) -> None:
    data = source(tmp_path)
    await backend.deploy(dep(), data)
    name = f"hello-code-{bundle.digest(data)[:12]}"
    assert configmaps(cluster) == {name: data}
    configmap = cluster.objects["configmaps"][name]
    validate(configmap)  # (the fake validates every write too)
    assert configmap["immutable"] is True
    assert configmap["metadata"]["labels"]["faas_function"] == "hello"
    assert configmap["metadata"]["labels"][objects.CODE_LABEL] == bundle.digest(data)[:12]

    deployment = cluster.objects["deployments"]["hello"]
    validate(deployment)
    pod = deployment["spec"]["template"]["spec"]
    (container,) = pod["containers"]
    assert container["image"] == RUNTIME
    assert {"name": "code", "mountPath": "/var/stoker/bundle", "readOnly": True} in container["volumeMounts"]
    assert {"name": "code", "configMap": {"name": name, "defaultMode": 0o444}} in pod["volumes"]
    env = {e["name"]: e["value"] for e in container["env"]}
    function_key = codesign.function_key(KEY, NS, "hello")
    assert env[codesign.BUNDLE_VAR] == "/var/stoker/bundle/bundle.tar.gz"
    assert env[codesign.KEY_VAR] == function_key.hex() and KEY.hex() not in str(deployment)
    assert env[codesign.SIGNATURE_VAR] == bundle.sign(function_key, data)
    assert env[codesign.UNPACK_VAR] == "1" and env["STOKER_ENTRYPOINT"] == "handler:handle"
    assert deployment["metadata"]["annotations"][objects.CODE_ANNOTATION] == name
    # The pod started (the fake checks the bundle against its signature, as the replica does) and is routed to.
    assert addresses(backend) == pod_ips(cluster) and len(addresses(backend)) == 1
    record = backend.get("hello", NS)
    assert record is not None and record.deployment.image == RUNTIME


async def test_bundles_a_configmap_cannot_run_are_refused_with_the_reason(
    backend: KubernetesBackend, cluster: FakeCluster, tmp_path: Path
) -> None:
    with pytest.raises(InvalidRequest, match=r"packages the runtime image lacks: build an image with `stoker build`"):
        await backend.deploy(dep(), source(tmp_path, **{"requirements.txt": "numpy==1.26.4\n"}))
    big = source(tmp_path, **{"blob.txt": base64.b64encode(os.urandom(1_100_000)).decode()})
    with pytest.raises(InvalidRequest, match=r"more than a ConfigMap holds \(1,000,000\): build an image"):
        await backend.deploy(dep(), big)
    with pytest.raises(InvalidRequest, match="bad code bundle"):
        await backend.deploy(dep(), b"not a tar.gz")
    with pytest.raises(InvalidRequest, match="no image and no code"):
        await backend.deploy(dep(), None)
    assert cluster.writes() == []


async def test_an_update_gets_its_own_configmap_and_the_old_one_goes_once_no_pod_uses_it(
    backend: KubernetesBackend, cluster: FakeCluster, tmp_path: Path
) -> None:
    first = source(tmp_path)
    await backend.deploy(dep(), first)
    await backend.deploy(dep(), first)  # unchanged: the same ConfigMap, the same version
    assert len(configmaps(cluster)) == 1 and len(cluster.pods("hello")) == 1
    second = source(tmp_path, "def handle(event, context):\n    return 'v2'\n")
    await backend.deploy(dep(), second)
    await until(lambda: list(configmaps(cluster).values()) == [second])
    # The old version's pods were gone, or terminating, before its code was (they unpacked it at start, and a
    # terminating pod is never restarted).
    assert len(cluster.pods("hello", terminating=False)) == 1


async def test_a_failed_update_keeps_the_old_version_and_its_configmap(
    backend: KubernetesBackend, cluster: FakeCluster, tmp_path: Path
) -> None:
    first = source(tmp_path)
    await backend.deploy(dep(), first)
    old = addresses(backend)
    cluster.behaviour[RUNTIME] = "crash"  # new pods of the runtime image crash from now on
    with pytest.raises(DeployFailed, match="previous version keeps serving"):
        await backend.deploy(dep(), source(tmp_path, "def handle(event, context):\n    return 'v2'\n"))
    assert list(configmaps(cluster).values()) == [first]
    await until(lambda: len(cluster.pods("hello")) == 1)
    assert addresses(backend) == old
    # and from a source deploy to an image: the old code stays until the image's pods replaced its pods
    cluster.behaviour.pop(RUNTIME)
    await backend.deploy(dep(image="registry.example/hello:1"), None)
    await until(lambda: configmaps(cluster) == {})


async def test_a_tampered_configmap_does_not_run(
    backend: KubernetesBackend, cluster: FakeCluster, tmp_path: Path
) -> None:
    data = source(tmp_path)
    forged = k8s_code.configmap(dep(), data)
    forged["binaryData"]["bundle.tar.gz"] = base64.b64encode(source(tmp_path, "import os\n")).decode()
    cluster.clients().core.create_namespaced_config_map(NS, forged)  # someone got there first with other bytes
    with pytest.raises(DeployFailed, match="CrashLoopBackOff"):
        await backend.deploy(dep(), data)


async def test_remove_deletes_the_code_of_every_version(
    backend: KubernetesBackend, cluster: FakeCluster, tmp_path: Path
) -> None:
    await backend.deploy(dep(), source(tmp_path))
    leftover = k8s_code.configmap(dep(), source(tmp_path, "x = 1\n"))  # as an interrupted deploy leaves it
    cluster.clients().core.create_namespaced_config_map(NS, leftover)
    await backend.deploy(dep("other"), source(tmp_path, "y = 1\n"))
    await backend.remove("hello", NS)
    assert [c["metadata"]["labels"]["faas_function"] for c in cluster.objects["configmaps"].values()] == ["other"]
    await asyncio.sleep(0)


def test_only_old_code_configmaps_no_deployment_names_are_stale() -> None:
    def cm(name: str, created: str) -> dict[str, object]:
        return {"metadata": {"name": name, "creationTimestamp": created}}

    now = 1_800_000_000.0  # 2027-01-15T08:00:00Z
    found = [
        cm("f-code-old", "2027-01-15T06:00:00Z"),  # two hours old, unused: stale
        cm("f-code-used", "2027-01-15T06:00:00Z"),  # a Deployment names it
        cm("g-code-new", "2027-01-15T07:59:00Z"),  # a deploy in another gateway may be about to use it
    ]
    assert k8s_code.stale(found, {"f-code-used"}, now) == ["f-code-old"]
