"""``stoker edge`` as the gateways' name changes under it, the way Swarm's DNS does in a rolling upgrade: the edge,
in process (its resolver is the one seam: no DNS server runs here), in front of real gateways (``stoker up``
processes). Swarm takes an old task out of the name's answer about two seconds before it tells it to stop (issue 19):
the calls in flight there must still be answered, and the new ones go to the gateway still named."""

from __future__ import annotations

import asyncio
import socket
from collections.abc import Callable, Iterator
from pathlib import Path

import httpx
import pytest

from gateway.edge import Edge, EdgeConfig, reachable
from tests.gateway.test_edge import HELLO, _gateway, _port
from tests.install.install_support import free_port
from tests.platform_fixture import Platform, write_handler

SLOW = "import time\n\ndef handle(event, context):\n    time.sleep(2)\n    return 'paid once'\n"


class Names:
    """The answers of the DNS the edge asks; a name with none is unknown (as a Swarm service with no task)."""

    def __init__(self, **answers: set[str]) -> None:
        self.answers = answers

    async def __call__(self, name: str, port: int) -> set[str]:
        found = self.answers.get(name)
        if not found:
            raise socket.gaierror(socket.EAI_NONAME, "Name or service not known")
        return set(found)


@pytest.fixture
def old_and_new(tmp_path: Path) -> Iterator[tuple[Platform, Platform]]:
    old, new = _gateway(tmp_path / "old"), _gateway(tmp_path / "new")
    assert old.deploy("slow", write_handler(tmp_path / "slow", SLOW)).status_code == 202
    try:
        yield old, new
    finally:
        for p in (old, new):
            if p.proc.poll() is None:
                p.proc.kill()


async def _until(check: Callable[[], bool], timeout: float, what: str) -> None:
    deadline = asyncio.get_running_loop().time() + timeout
    while not check():
        assert asyncio.get_running_loop().time() < deadline, f"timed out after {timeout:g}s waiting for {what}"
        await asyncio.sleep(0.01)


async def test_a_gateway_taken_out_of_the_name_still_answers_the_post_it_is_running(
    old_and_new: tuple[Platform, Platform],
) -> None:
    old, new = old_and_new
    names = Names(old={"127.0.0.1"})  # the old task alone, then the new one starts (start-first)
    edge = Edge(EdgeConfig(upstream=f"old:{_port(old)},new:{_port(new)}"), resolver=names)
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=edge), base_url="http://edge", timeout=60) as c:
        await edge.check()
        post = asyncio.create_task(c.post("/function/slow", content=b"pay"))  # runs on the old gateway for 2 s
        await _until(lambda: edge.upstream.active("127.0.0.1", _port(old)) == 1, 30, "the POST on the old gateway")
        names.answers = {"new": {"127.0.0.1"}}  # the old task leaves the answer, the new one is in it
        await edge.check()
        # New calls go to the gateway still named, while the old one runs the POST it received.
        assert (await c.get("/function/hello")).text == HELLO[0]
        assert [(g.port, g.ready) for g in edge.gateways] == [(_port(new), True)]
        answer = await post
        assert (answer.status_code, answer.text) == (200, "paid once")  # was the edge's own 502 (issue 19)
        # Then Swarm stops it; the edge, with nothing in flight there any more, forgets it.
        old.proc.terminate()
        assert await asyncio.to_thread(old.proc.wait, 60) == 0
        await edge.check()
        assert edge.leaving == {}
        assert (await c.post("/function/hello", content=b"again")).text == "Hello, again!\n"
    edge.upstream.close()


async def test_a_gateway_out_of_the_name_gets_no_new_call_and_comes_back_if_its_address_does(
    old_and_new: tuple[Platform, Platform],
) -> None:
    old, new = old_and_new
    names = Names(old={"127.0.0.1"}, new={"127.0.0.1"})
    edge = Edge(EdgeConfig(upstream=f"old:{_port(old)},new:{_port(new)}"), resolver=names)
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=edge), base_url="http://edge", timeout=60) as c:
        await edge.check()
        assert all(g.ready for g in edge.gateways) and len(edge.gateways) == 2
        names.answers = {"new": {"127.0.0.1"}}
        await edge.check()
        for _ in range(5):  # the slow function exists on the old gateway only: none of these reach it
            assert (await c.post("/function/slow", content=b"x")).status_code == 404
        names.answers = {"old": {"127.0.0.1"}, "new": {"127.0.0.1"}}  # the address is named again (a new task's)
        await edge.check()
        assert len(edge.gateways) == 2 and all(g.ready for g in edge.gateways)
    edge.upstream.close()


async def test_an_address_answers_while_a_process_listens_or_its_kernel_refuses_not_when_nothing_is_there() -> None:
    with socket.socket() as listening:
        listening.bind(("127.0.0.1", 0))
        listening.listen()
        assert await reachable("127.0.0.1", listening.getsockname()[1], 2)
    assert await reachable("127.0.0.1", free_port(), 2)  # refused: the host is there (a gateway still draining)
    with socket.socket() as full, socket.socket() as queued:
        full.bind(("127.0.0.1", 0))
        full.listen(0)
        queued.connect(full.getsockname())  # never accepted: the queue is full, the kernel drops what comes next
        # Nothing answers a connection there: as at the address of a container that is gone.
        assert not await reachable("127.0.0.1", full.getsockname()[1], 0.5)
