"""The docs are executed: every marked block of README.md and docs/*.md runs, in page order, as a user would type it
(see tests/docs/docblocks.py for the markers), and what a page shows a command printing is checked.

Each page runs in a fresh working folder holding a copy of ``functions/``, with ``HOME`` there too, so ``~/.stoker`` is
new and nothing the developer has set (``STOKER_*``, ``OPENFAAS_*``) leaks in. ``STOKER_PORT=0`` lets every ``stoker
up`` take a free port; the pages say ``127.0.0.1:8080``, which the runner replaces by the port the platform recorded in
``~/.stoker`` (the CLI and SDK find it there themselves), and ``/home/you`` by that ``HOME``. A page that starts no
platform itself gets one started for it (``stoker up --stack functions/stack.yml``) unless a block says ``alone``.
Pages' Docker blocks form a second scenario, run with ``STOKER_TEST_DOCKER=1`` against the real engine."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.docs.docblocks import Block, matches, parse

ROOT = Path(__file__).resolve().parents[2]
PAGES = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
RECORD = Path(".stoker") / "gateway.json"  # under HOME: where `stoker up` says it listens
IMPLICIT_UP = Block("run", "sh", "stoker up --stack functions/stack.yml\n", 0, {"background"}, timeout=180)
IMPLICIT_UP.expect = Block("output", "text", "...\nstoker: deployed hello, echo, wordcount from ...\n...\n", 0)

pytestmark = pytest.mark.slow


def _scenarios() -> list[tuple[Path, str]]:
    found = []
    for page in PAGES:
        for scenario in sorted({b.scenario for b in parse(page)}):
            found.append((page, scenario))
    return found


class Background:
    """A block left running (``stoker up``), its output collected as it comes."""

    def __init__(self, block: Block, cwd: Path, env: dict[str, str], bash: list[str]) -> None:
        self.block = block
        self.output: list[str] = []
        self.proc = subprocess.Popen(
            [*bash, block.text],
            cwd=cwd,
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
            start_new_session=True,  # its own process group, stopped as Ctrl-C stops it
        )
        threading.Thread(target=self._pump, daemon=True).start()

    def _pump(self) -> None:
        assert self.proc.stdout is not None
        for line in self.proc.stdout:
            self.output.append(line)

    def text(self) -> str:
        return "".join(self.output)

    def interrupt(self, timeout: float = 60) -> int:
        if self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGINT)
        try:
            return self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            os.killpg(self.proc.pid, signal.SIGKILL)
            raise


class Scenario:
    def __init__(self, page: Path, name: str, work: Path) -> None:
        self.page, self.name, self.work = page, name, work
        self.home = work / "home"
        self.home.mkdir()
        for folder in ("functions", "bench", "deploy"):  # what the pages' commands use from a checkout
            shutil.copytree(ROOT / folder, work / folder, ignore=shutil.ignore_patterns("build", "__pycache__"))
        self.bin = Path(sys.executable).parent
        env = {k: v for k, v in os.environ.items() if not k.startswith(("STOKER_", "OPENFAAS_", "VIRTUAL_ENV"))}
        self.env = {**env, "HOME": str(self.home), "STOKER_PORT": "0", "PYTHONUNBUFFERED": "1"}
        self.env["PATH"] = f"{self.bin}{os.pathsep}{env.get('PATH', '')}"
        self.background: list[Background] = []
        self.address = ""  # host:port the platform recorded

    def where(self, block: Block) -> str:
        return f"{self.page.relative_to(ROOT)}:{block.line}" if block.line else "(the platform started for the page)"

    def substitute(self, text: str) -> str:
        text = text.replace("/home/you", str(self.home))
        if not self.address:
            return text
        return text.replace("127.0.0.1:8080", self.address).replace("localhost:8080", self.address)

    def run(self, block: Block) -> None:
        if block.kind == "file":
            target = self.work / block.path
            target.parent.mkdir(parents=True, exist_ok=True)
            target.write_text(block.text)
            return
        if "install" in block.tags:
            self.install(block)
            return
        if block.lang == "python":
            script = self.work / f".doc-block-{block.line}.py"
            script.write_text(self.substitute(block.text))
            command = [sys.executable, str(script)]
        else:
            strict = [] if "fails" in block.tags else ["-e", "-o", "pipefail"]
            command = ["bash", *strict, "-c", self.substitute(block.text)]
        if "background" in block.tags:
            self.start(block, command[:-1])
            return
        try:
            done = subprocess.run(  # one stream: what a terminal shows, in that order
                command, cwd=self.work, env=self.env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                timeout=block.timeout,
            )  # fmt: skip
        except subprocess.TimeoutExpired as exc:
            pytest.fail(f"{self.where(block)}: still running after {block.timeout:g} s; output so far:\n{exc.output}")
        out = done.stdout
        failed = done.returncode != 0
        assert failed == ("fails" in block.tags), f"{self.where(block)}: exit status {done.returncode}:\n{out}"
        if block.expect is not None:
            expected = self.substitute(block.expect.text)
            assert matches(expected, out), f"{self.where(block)}: printed\n{out}\n--- the page shows\n{expected}"

    def install(self, block: Block) -> None:
        """The virtualenv a user makes: made for real with STOKER_TEST_DOCS_INSTALL=1 (slow: every dependency is
        installed from PyPI), else the test's own virtualenv, which `pip install -e '.[dev]'` made the same way."""
        if not os.environ.get("STOKER_TEST_DOCS_INSTALL"):
            return
        checkout = self.work / "checkout"
        shutil.copytree(ROOT, checkout, ignore=shutil.ignore_patterns(".venv", ".git", "*.egg-info", "__pycache__"))
        done = subprocess.run(
            ["bash", "-e", "-c", block.text], cwd=checkout, env=self.env, capture_output=True, text=True, timeout=900
        )
        assert done.returncode == 0, f"{self.where(block)}: {done.stdout}{done.stderr}"
        self.bin = checkout / ".venv" / "bin"
        self.env["PATH"] = f"{self.bin}{os.pathsep}{self.env['PATH']}"

    def start(self, block: Block, bash: list[str]) -> None:
        proc = Background(block, self.work, self.env, bash)
        self.background.append(proc)
        record = self.home / RECORD
        deadline = time.monotonic() + block.timeout
        while True:
            if record.is_file():
                self.address = json.loads(record.read_text())["url"].split("://", 1)[1]
                if block.expect is None or matches(self.substitute(block.expect.text), proc.text()):
                    break
            if proc.proc.poll() is not None or time.monotonic() > deadline:
                expected = self.substitute(block.expect.text) if block.expect else "(a gateway recorded in ~/.stoker)"
                pytest.fail(f"{self.where(block)}: printed\n{proc.text()}\n--- the page shows\n{expected}")
            time.sleep(0.1)

    def stop(self) -> None:
        """Ctrl-C every platform, as a user would: each stops cleanly and takes its record with it."""
        problems = []
        for proc in reversed(self.background):
            status = proc.interrupt()
            if status != 0:
                problems.append(f"{self.where(proc.block)}: exit status {status} after Ctrl-C:\n{proc.text()}")
        self.background.clear()
        assert not problems, "\n".join(problems)
        assert not (self.home / RECORD).exists(), "a stopped platform left its gateway record"


@pytest.fixture
def scenario(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Scenario]:
    page, name = request.param
    if name == "docker" and not os.environ.get("STOKER_TEST_DOCKER"):
        pytest.skip("the Docker blocks run with STOKER_TEST_DOCKER=1")
    s = Scenario(page, name, tmp_path)
    # Images the page builds for its own function folders (stoker-fn/<folder>): those made meanwhile go after.
    folders = {Path(b.path).parts[0] for b in parse(page) if b.kind == "file" and b.scenario == name and "/" in b.path}
    built = sorted(f"stoker-fn/{folder}" for folder in folders)
    before = _images(built) if name == "docker" else set()
    try:
        yield s
    finally:
        for proc in s.background:  # a failed block: stop what is running, quietly
            if proc.proc.poll() is None:
                os.killpg(proc.proc.pid, signal.SIGINT)
                try:
                    proc.proc.wait(60)
                except subprocess.TimeoutExpired:
                    os.killpg(proc.proc.pid, signal.SIGKILL)
        if name == "docker":
            _remove_docker_objects(s.home / ".stoker")
            made = _images(built) - before
            if made:
                subprocess.run(["docker", "rmi", *sorted(made)], capture_output=True)


@pytest.mark.parametrize(
    "scenario", _scenarios(), ids=[f"{p.relative_to(ROOT)}-{n}" for p, n in _scenarios()], indirect=True
)
def test_page_runs_as_written(scenario: Scenario) -> None:
    blocks = [b for b in parse(scenario.page) if b.scenario == scenario.name]
    # A page that starts its own platform, or whose examples need none (`alone`), gets none started for it.
    if not any("background" in b.tags or "alone" in b.tags for b in blocks):
        up = IMPLICIT_UP
        if scenario.name == "docker":
            up = Block("run", "sh", "stoker up --backend docker --stack functions/stack.yml\n", 0, {"background"})
            up.timeout, up.expect = 900, IMPLICIT_UP.expect
        scenario.run(up)
    for block in blocks:
        scenario.run(block)
    scenario.stop()


def test_every_page_has_a_runnable_example() -> None:
    bare = [str(p.relative_to(ROOT)) for p in PAGES if not any(b.kind == "run" for b in parse(p))]
    assert not bare, f"pages without a <!-- run --> block: {', '.join(bare)}"


def _remove_docker_objects(home: Path) -> None:
    """What the Docker scenario's platform made (labelled with its owner, derived from its home): ours alone."""
    import hashlib

    from runtime.backends.containers import OWNER

    owner = hashlib.sha256(str(home.resolve()).encode()).hexdigest()[:12]
    label = f"label={OWNER}={owner}"
    for kind, listing in (("container", ["ps", "-aq"]), ("volume", ["volume", "ls", "-q"])):
        ids = subprocess.run(["docker", *listing, "--filter", label], capture_output=True, text=True).stdout.split()
        if ids:
            remove = ["rm", "-f"] if kind == "container" else ["volume", "rm", "-f"]
            subprocess.run(["docker", *remove, *ids], capture_output=True)


def _images(repositories: list[str]) -> set[str]:
    refs: set[str] = set()
    for repository in repositories:
        listing = ["docker", "images", repository, "--format", "{{.Repository}}:{{.Tag}}"]
        refs.update(subprocess.run(listing, capture_output=True, text=True).stdout.split())
    return refs
