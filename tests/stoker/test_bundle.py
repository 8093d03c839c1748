"""stoker/bundle.py: packing is reproducible; check() refuses hostile archives before anything is extracted; unpack()
writes owner-only files inside its folder only; a signature verifies only with its key and its bytes, and a malformed
signature is a refusal, never an exception."""

from __future__ import annotations

import gzip
import io
import os
import stat
import tarfile
from collections.abc import Callable
from pathlib import Path

import pytest

from stoker import bundle
from stoker.errors import InvalidRequest, PayloadTooLarge


def _tar(*members: tuple[tarfile.TarInfo, bytes | None]) -> bytes:
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w:gz") as tar:
        for info, content in members:
            tar.addfile(info, io.BytesIO(content) if content is not None else None)
    return buf.getvalue()


def _file(name: str, content: bytes = b"x", mode: int = 0o644) -> tuple[tarfile.TarInfo, bytes]:
    info = tarfile.TarInfo(name)
    info.size = len(content)
    info.mode = mode
    return info, content


def _special(name: str, kind: bytes, linkname: str = "") -> tuple[tarfile.TarInfo, None]:
    info = tarfile.TarInfo(name)
    info.type = kind
    info.linkname = linkname
    return info, None


HANDLER = _file("handler.py", b"def handle(event, context):\n    return 'hi'\n")


def _folder(root: Path) -> Path:
    root.mkdir(parents=True)
    (root / "handler.py").write_text("def handle(event, context):\n    return 'hi'\n")
    (root / "lib").mkdir()
    (root / "lib" / "util.py").write_text("X = 1\n")
    (root / "run.sh").write_text("#!/bin/sh\n")
    (root / "run.sh").chmod(0o755)
    return root


# pack


def test_the_same_files_pack_to_the_same_bytes_whatever_their_times_owners_or_modes(tmp_path: Path) -> None:
    a, b = _folder(tmp_path / "a"), _folder(tmp_path / "b")
    os.utime(b / "handler.py", (1_000_000, 1_000_000))
    (b / "lib" / "util.py").chmod(0o600)  # group/other bits do not ship; only "executable or not" does
    (b / "handler.py").chmod(0o664)
    first = bundle.pack(a)
    assert bundle.pack(b) == first
    assert bundle.pack(a) == first
    assert first[4:8] == b"\0\0\0\0"  # the gzip header's time is zeroed
    with tarfile.open(fileobj=io.BytesIO(first), mode="r:gz") as tar:
        members = {m.name: m for m in tar}
    assert list(members) == sorted(members)
    assert all(m.mtime == 0 and m.uid == 0 and m.gid == 0 and m.uname == "" for m in members.values())
    assert members["run.sh"].mode == 0o755 and members["handler.py"].mode == 0o644
    (b / "handler.py").write_text("def handle(event, context):\n    return 'changed'\n")
    assert bundle.digest(bundle.pack(b)) != bundle.digest(first)  # a content change is a new address


def test_caches_compiled_files_and_symlinks_are_not_shipped(tmp_path: Path) -> None:
    root = _folder(tmp_path / "fn")
    for skipped in ("__pycache__", ".git", ".venv", "build", ".mypy_cache", ".pytest_cache"):
        (root / skipped).mkdir()
        (root / skipped / "f.py").write_text("")
    (root / "lib" / "util.cpython-311.pyc").write_bytes(b"\0")
    (tmp_path / "secret").write_text("outside")
    (root / "link.txt").symlink_to(tmp_path / "secret")
    os.mkfifo(root / "fifo")
    names = bundle.check(bundle.pack(root))
    assert sorted(names) == ["handler.py", "lib/util.py", "run.sh"]


def test_packing_something_that_is_not_a_folder_is_refused(tmp_path: Path) -> None:
    with pytest.raises(InvalidRequest, match="not a folder"):
        bundle.pack(tmp_path / "missing")
    (tmp_path / "file").write_text("")
    with pytest.raises(InvalidRequest, match="not a folder"):
        bundle.pack(tmp_path / "file")


def test_a_folder_over_the_limit_is_refused_while_packing(tmp_path: Path) -> None:
    root = _folder(tmp_path / "fn")
    (root / "big.bin").write_bytes(os.urandom(300_000))  # incompressible: the archive grows past the limit mid-way
    with pytest.raises(PayloadTooLarge, match="over the limit of 100000 bytes"):
        bundle.pack(root, max_bytes=100_000)
    small = bundle.pack(_folder(tmp_path / "small"))
    # Just under the size of the finished archive: only the final (compressed) size is over.
    with pytest.raises(PayloadTooLarge, match=f"is {len(small)} bytes, over the limit of {len(small) - 1}"):
        bundle.pack(tmp_path / "small", max_bytes=len(small) - 1)


# check


def test_a_good_bundle_lists_its_members(tmp_path: Path) -> None:
    data = _tar(HANDLER, _file("./lib/util.py"), (tarfile.TarInfo("lib"), None))
    assert bundle.check(data) == ["handler.py", "lib/util.py", "lib"]


@pytest.mark.parametrize("name", ["/etc/passwd", "../x.py", "lib/../../x.py", "..", "a/b/../../../c"])
def test_paths_that_escape_the_folder_are_refused(name: str) -> None:
    with pytest.raises(InvalidRequest, match="escapes the function folder"):
        bundle.check(_tar(HANDLER, _file(name)))


@pytest.mark.parametrize(
    "member",
    [
        _special("evil", tarfile.SYMTYPE, "/etc/passwd"),
        _special("up", tarfile.SYMTYPE, "../../outside"),
        _special("hard", tarfile.LNKTYPE, "handler.py"),
        _special("dev", tarfile.CHRTYPE),
        _special("disk", tarfile.BLKTYPE),
        _special("pipe", tarfile.FIFOTYPE),
    ],
    ids=["symlink-absolute", "symlink-up", "hardlink", "char-device", "block-device", "fifo"],
)
def test_links_and_special_files_are_refused(member: tuple[tarfile.TarInfo, None]) -> None:
    with pytest.raises(InvalidRequest, match="is not a plain file or folder"):
        bundle.check(_tar(HANDLER, member))


def test_a_member_that_unpacks_over_the_limit_is_refused_from_its_header() -> None:
    # 2 MB of zeros compress to a few KB: the archive is small, the member is not.
    data = _tar(HANDLER, _file("zeros.bin", bytes(2_000_000)))
    assert len(data) < 10_000
    with pytest.raises(PayloadTooLarge, match="unpacks to more than 1000000 bytes"):
        bundle.check(data, max_bytes=1_000_000)


def test_a_huge_member_is_refused_before_its_content_is_read() -> None:
    # A header that claims 1 TB, followed by no content at all: refused from the header, not a truncation error.
    huge = tarfile.TarInfo("huge.bin")
    huge.size = 1 << 40
    header = huge.tobuf(tarfile.PAX_FORMAT)
    handler_info, handler_body = HANDLER
    first = handler_info.tobuf(tarfile.PAX_FORMAT) + handler_body + bytes(-len(handler_body) % 512)
    data = gzip.compress(first + header)
    with pytest.raises(PayloadTooLarge, match="unpacks to more than"):
        bundle.check(data)


def test_many_small_members_add_up_over_the_limit() -> None:
    members = [_file(f"f{i}.txt", bytes(400)) for i in range(5)]
    with pytest.raises(PayloadTooLarge, match="unpacks to more than 1500 bytes"):
        bundle.check(_tar(HANDLER, *members), max_bytes=1500)


def test_an_archive_over_the_limit_is_refused_before_it_is_opened() -> None:
    with pytest.raises(PayloadTooLarge, match="the bundle is 2000 bytes, over the limit of 1999"):
        bundle.check(b"\0" * 2000, max_bytes=1999)


def test_too_many_members_are_refused_unless_the_count_is_unlimited() -> None:
    data = _tar(HANDLER, *(_file(f"f{i}") for i in range(10)))
    with pytest.raises(PayloadTooLarge, match="more than 10 files and folders"):
        bundle.check(data, max_files=10)
    assert len(bundle.check(data, max_files=11)) == 11
    assert len(bundle.check(data, max_files=None)) == 11


@pytest.mark.parametrize(
    "data",
    [b"", b"not a tarball", gzip.compress(b"not a tar inside"), b"\x1f\x8b\x08\x00garbage"],
    ids=["empty", "text", "gzip-of-junk", "bad-gzip"],
)
def test_what_is_not_a_tar_gz_is_a_clear_refusal(data: bytes) -> None:
    with pytest.raises(InvalidRequest, match=r"not a valid tar\.gz archive"):
        bundle.check(data)


def test_a_truncated_bundle_is_a_clear_refusal(tmp_path: Path) -> None:
    data = bundle.pack(_folder(tmp_path / "fn"))
    with pytest.raises(InvalidRequest, match=r"not a valid tar\.gz archive"):
        bundle.check(data[: len(data) // 2])


def test_the_handler_is_required_unless_told_otherwise() -> None:
    data = _tar(_file("other.py"))
    with pytest.raises(InvalidRequest, match=r"the function folder has no handler\.py"):
        bundle.check(data)
    with pytest.raises(InvalidRequest, match=r"has no main\.py"):
        bundle.check(_tar(HANDLER), required="main.py")
    assert bundle.check(data, required=None) == ["other.py"]
    with pytest.raises(InvalidRequest, match=r"has no handler\.py"):
        bundle.check(_tar(_file("lib/handler.py")))  # only at the top of the folder


# unpack


def _modes(root: Path) -> dict[str, int]:
    return {p.relative_to(root).as_posix(): stat.S_IMODE(p.stat().st_mode) for p in root.rglob("*")}


@pytest.fixture(params=["filter", "fallback"])
def unpack(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> Callable[..., Path]:
    """unpack() as it runs on this Python (extraction filters) and as it runs where tarfile has none (the base
    image's Python 3.11.2)."""
    if request.param == "fallback":
        monkeypatch.delattr(tarfile, "data_filter")
    return bundle.unpack


def test_unpacking_gives_the_files_readable_by_their_owner_only(tmp_path: Path, unpack: Callable[..., Path]) -> None:
    data = bundle.pack(_folder(tmp_path / "fn"))
    out = unpack(data, tmp_path / "out" / "deep")
    assert out == tmp_path / "out" / "deep"
    assert (out / "handler.py").read_text().endswith("return 'hi'\n")
    assert _modes(out) == {"handler.py": 0o600, "lib": 0o700, "lib/util.py": 0o600, "run.sh": 0o700}
    assert stat.S_IMODE(out.stat().st_mode) == 0o700


def test_unpacking_a_member_whose_folder_is_not_listed_creates_it(tmp_path: Path, unpack: Callable[..., Path]) -> None:
    out = unpack(_tar(HANDLER, _file("a/b/c.py", b"C", mode=0o777)), tmp_path / "out")
    assert (out / "a" / "b" / "c.py").read_bytes() == b"C"
    assert _modes(out)["a/b/c.py"] == 0o700 and _modes(out)["a/b"] == 0o700


@pytest.mark.parametrize(
    "member",
    [_file("../escaped.py"), _file("/tmp/escaped.py"), _special("escaped.py", tarfile.SYMTYPE, "../outside")],
    ids=["dotdot", "absolute", "symlink"],
)
def test_a_hostile_bundle_writes_nothing_at_all(
    tmp_path: Path, unpack: Callable[..., Path], member: tuple[tarfile.TarInfo, bytes | None]
) -> None:
    dest = tmp_path / "box" / "out"
    with pytest.raises(InvalidRequest):
        unpack(_tar(HANDLER, member), dest)
    assert not (tmp_path / "box").exists()  # refused before the folder is even created
    assert not Path("/tmp/escaped.py").exists()


def test_unpacking_honours_its_own_limits(tmp_path: Path) -> None:
    data = _tar(HANDLER, _file("big.bin", bytes(5000)), _file("two"))
    with pytest.raises(PayloadTooLarge):
        bundle.unpack(data, tmp_path / "a", max_bytes=4000)
    with pytest.raises(PayloadTooLarge):
        bundle.unpack(data, tmp_path / "b", max_files=2)
    assert not (tmp_path / "a").exists() and not (tmp_path / "b").exists()
    assert sorted(p.name for p in bundle.unpack(data, tmp_path / "c").iterdir()) == ["big.bin", "handler.py", "two"]


# digest, sign, verify


def test_the_digest_is_the_first_16_hex_digits_of_the_sha256() -> None:
    assert bundle.digest(b"") == "e3b0c44298fc1c14"
    assert bundle.digest(b"a") != bundle.digest(b"b")


def test_a_signature_verifies_with_its_key_and_its_bytes_only() -> None:
    key, data = b"k" * 32, b"bundle bytes"
    signature = bundle.sign(key, data)
    assert len(signature) == 64 and int(signature, 16) >= 0
    assert bundle.sign(key, data) == signature  # deterministic
    assert bundle.verify(key, data, signature)
    assert not bundle.verify(b"K" * 32, data, signature)
    assert not bundle.verify(key, data + b"!", signature)
    assert not bundle.verify(key, data, signature.upper())
    assert not bundle.verify(key, data, signature[:-1])


@pytest.mark.parametrize(
    "signature",
    ["", "not hex", "é" * 64, "\x00" * 64, "\udcff" * 64, "0" * 10_000],
    ids=["empty", "text", "non-ascii", "nul", "surrogate", "long"],
)
def test_a_malformed_signature_is_a_refusal_not_an_exception(signature: str) -> None:
    assert bundle.verify(b"key", b"data", signature) is False
