"""Schemathesis fuzzes a real ``stoker up`` from the API description it serves (``/system/openapi.json``).

Two runs, every phase (examples, coverage, fuzzing, stateful), every check, positive and negative data: one with
credentials, one without. Together they send well over 2,000 requests across all routes; the test passes only when
Schemathesis reports no failure (no response >= 500, none whose status, content type, headers or body contradict the
document, no schema-violating request accepted, no schema-valid one refused, 405 with ``Allow`` for undeclared
methods, 401 for every protected route without credentials) and its HAR recordings, read here, confirm the count, hold
no 5xx, and every NDJSON line conforms to its schema (Schemathesis cannot read NDJSON itself).

The seed is random unless ``STOKER_FUZZ_SEED`` is set; a failure prints it, with Schemathesis' own report and the
``curl`` to reproduce each finding.
"""

from __future__ import annotations

import json
import os
import random
import subprocess
import sys
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import jsonschema
import pytest

from gateway.openapi import document
from tests.platform_fixture import FUNCTIONS, PASSWORD, Platform, start_platform

pytestmark = [pytest.mark.slow, pytest.mark.timeout(480)]  # about a minute here; two runs of at most 180 s

MIN_REQUESTS = 2000
EXAMPLE_FUNCTIONS = ("hello", "echo", "wordcount")

# What the document cannot say, told to Schemathesis (each entry says why); nothing here loosens a check.
CONFIG = """
# Path and query names that exist, half the time, so calls reach the deployed functions and not only 404.
[dictionaries.functions]
values = ["hello", "echo", "wordcount", "echo.openfaas-fn"]

[parameters]
"path.name" = { dictionary = "functions", probability = 0.6 }
"path.function" = { dictionary = "functions", probability = 0.6 }
"query.name" = { dictionary = "functions", probability = 0.6 }

# /function/ and /async-function/ take every method, QUERY included: they pass it to the function.
[[operations]]
include-path-regex = "^/(async-)?function/"
phases.coverage.unexpected-methods = []
# A call is not a resource: DELETE /function/x calls x with DELETE, it deletes nothing.
checks.use_after_free.enabled = false
checks.ensure_resource_availability.enabled = false

# Whatever a function answers is its own answer (wordcount answers 400 to JSON without "text"): 2xx to 4xx are all
# acceptable outcomes of a valid call. A 5xx still fails the run (not_a_server_error).
[[operations]]
include-path-regex = "^/function/"
checks.positive_data_acceptance.expected-statuses = ["2xx", "3xx", "4xx"]

# An X-Callback-Url is refused (400) when its host does not resolve or resolves to an internal address
# (docs/security.md, "Callbacks"): no schema can say which names resolve where.
[[operations]]
include-path-regex = "^/async-function/"
checks.positive_data_acceptance.expected-statuses = ["2xx", "400", "401", "404", "409", "429"]

# The stateful phase links the stream names that GET /system/queues lists (stoker's own async streams among them) into
# this path, where they are refused (400, by design); every other 400 of this route is pinned in test_publish.py.
[[operations]]
include-name = "POST /system/streams/{stream}"
checks.positive_data_acceptance.expected-statuses = ["2xx", "400", "401", "404"]

# follow=true keeps the stream open until the client leaves: a fuzzer waiting for its end would wait forever.
[[operations]]
include-name = "GET /system/logs"
parameters = { follow = "false" }

# Rules JSON Schema cannot state: a source must be a real bundle of a function (a gzip tar that unpacks), the local
# backend runs source and not images, secrets named must exist, min <= max replicas, a function's own maximum.
[[operations]]
include-name = ["POST /system/functions", "PUT /system/functions"]
checks.positive_data_acceptance.expected-statuses = ["2xx", "400", "401", "404", "409", "422"]

# A namespace named in the body must be the one in the URL (400 otherwise, as faas-provider's handlers answer): JSON
# Schema cannot relate a body to its path.
[[operations]]
include-name = ["POST /system/namespace/{name}", "PUT /system/namespace/{name}", "DELETE /system/namespace/{name}"]
checks.positive_data_acceptance.expected-statuses = ["2xx", "400", "401", "404", "409"]

# The function is named in the body or in the query: one of the two is needed, which JSON Schema cannot say.
[[operations]]
include-name = ["DELETE /system/functions", "POST /system/scale-function/{name}"]
checks.positive_data_acceptance.expected-statuses = ["2xx", "400", "401", "404"]
"""


@pytest.fixture(scope="module")
def platform(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Platform]:
    p = start_platform(tmp_path_factory.mktemp("stoker-home"), env={"STOKER_POOL_SIZE": "0"})
    _deploy_missing(p)
    yield p
    p.stop()


def _deploy_missing(platform: Platform) -> None:
    """The example functions, deployed again where a run removed them (the stateful phase follows the links it
    infers: it lists functions, then deletes one)."""
    with platform.client() as c:
        present = {f["name"] for f in c.get("/system/functions").json()}
    for name in EXAMPLE_FUNCTIONS:
        if name not in present:
            # At most 2 replicas: the fuzzer scales them, and the machine running the tests is small.
            r = platform.deploy(name, FUNCTIONS / name, labels={"com.openfaas.scale.max": "2"})
            assert r.status_code == 202, r.text


def _schemathesis(platform: Platform, schema: Path, report: Path, seed: int, *extra: str) -> tuple[int, str]:
    config = report.parent / "schemathesis.toml"
    config.write_text(CONFIG)
    command = [
        sys.executable, "-m", "schemathesis.cli", "--config-file", str(config), "--no-color",
        "run", str(schema), "--url", platform.url, "--seed", str(seed), "--request-timeout", "30",
        "--report", "har", "--report-har-path", str(report), "--max-failures", "20", *extra,
    ]  # fmt: skip
    done = subprocess.run(command, capture_output=True, text=True, timeout=180, cwd=report.parent)
    return done.returncode, done.stdout + done.stderr


def _entries(har: Path) -> list[dict[str, Any]]:
    entries: list[dict[str, Any]] = json.loads(har.read_text())["log"]["entries"]
    return entries


def _ndjson_problems(entries: list[dict[str, Any]], doc: dict[str, Any]) -> list[str]:
    """Every line of every NDJSON answer against the schema the document gives it (logs: LogLine)."""
    validator = jsonschema.Draft202012Validator(
        {"$ref": "#/components/schemas/LogLine", "components": doc["components"]},
        format_checker=jsonschema.Draft202012Validator.FORMAT_CHECKER,
    )
    problems = []
    for entry in entries:
        content = entry["response"]["content"]
        if not content.get("mimeType", "").startswith("application/x-ndjson"):
            continue
        for line in content.get("text", "").splitlines():
            if line.strip():
                problems += [f"{entry['request']['url']}: {e.message}" for e in validator.iter_errors(json.loads(line))]
    return problems


def test_fuzzing_the_gateway_finds_nothing(platform: Platform, tmp_path: Path) -> None:
    seed = int(os.environ.get("STOKER_FUZZ_SEED") or random.randrange(2**32))
    served = httpx.get(platform.url + "/system/openapi.json", auth=platform.auth)
    assert served.status_code == 200 and served.json() == document()
    schema = tmp_path / "openapi.json"
    schema.write_bytes(served.content)

    runs = {
        "with credentials": ("--header", f"Authorization: Bearer {PASSWORD}", "--max-examples", "10"),
        "without credentials": ("--max-examples", "4", "--phases", "examples,coverage,fuzzing"),
    }
    statuses: Counter[int] = Counter()
    entries: list[dict[str, Any]] = []
    for i, (what, extra) in enumerate(runs.items()):
        report = tmp_path / f"run{i}" / "requests.har"
        report.parent.mkdir()
        code, output = _schemathesis(platform, schema, report, seed + i, *extra)
        assert code == 0, f"schemathesis {what} (seed {seed + i}) found problems:\n{output[-20000:]}"
        run = _entries(report)
        entries += run
        by_status = Counter(e["response"]["status"] for e in run)
        statuses.update(by_status)
        print(f"schemathesis {what} (seed {seed + i}): {len(run)} requests, by status {sorted(by_status.items())}")
        _deploy_missing(platform)

    assert len(entries) >= MIN_REQUESTS, f"only {len(entries)} requests were sent"
    assert not [s for s in statuses if s >= 500 or s == 0], f"seed {seed}: statuses {sorted(statuses.items())}"
    assert statuses[401] > 0 and statuses[200] > 0 and statuses[202] > 0, sorted(statuses.items())
    assert not _ndjson_problems(entries, document())
    # The platform is still whole: its functions serve, and every function it lists answers.
    assert httpx.post(platform.url + "/function/hello", content=b"fuzz").text == "Hello, fuzz!\n"
    with platform.client() as c:
        for status in c.get("/system/functions").json():
            assert httpx.get(f"{platform.url}/function/{status['name']}", timeout=30).status_code < 500
