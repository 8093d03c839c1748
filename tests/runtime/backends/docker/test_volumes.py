"""Which source bundles get an image of their own on the docker backend (only those with something to install)."""

from __future__ import annotations

import io
import tarfile

import pytest

from runtime.backends.containers import base_packages, needs_image


def _bundle(requirements: str | None) -> bytes:
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w:gz") as tar:
        for name, text in (("handler.py", "def handle(e, c):\n    return 1\n"), ("requirements.txt", requirements)):
            if text is not None:
                data = text.encode()
                info = tarfile.TarInfo(name)
                info.size = len(data)
                tar.addfile(info, io.BytesIO(data))
    return buf.getvalue()


@pytest.mark.parametrize("requirements", [None, "", "# nothing\n\n", "msgpack", "MsgPack\n", "uvicorn[standard]"])
def test_nothing_to_install_needs_no_image(requirements: str | None) -> None:
    assert not needs_image(_bundle(requirements))


def test_a_pin_to_the_base_images_version_needs_no_image() -> None:
    assert not needs_image(_bundle(f"msgpack=={base_packages()['msgpack']}"))


@pytest.mark.parametrize(
    "requirements", ["six", "msgpack==0.0.1", "msgpack>=1", "msgpack\nsix==1.16.0", "-r other.txt"]
)
def test_anything_the_base_image_lacks_needs_an_image(requirements: str) -> None:
    assert needs_image(_bundle(requirements))
