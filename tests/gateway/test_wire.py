"""What the gateway writes to a replica: nothing that could end a line early (gateway.wire, gateway.upstream)."""

from __future__ import annotations

import pytest

from gateway.upstream import encode_head
from gateway.wire import as_target, problem
from stoker.errors import InvalidRequest

HOST = b"127.0.0.1:8080"


def test_a_plain_request_is_written_as_given() -> None:
    head = encode_head("POST", b"/a%20b?q=%0d%0a", HOST, [(b"x-custom", b"yes\tand obs-text \xe9")], 4)
    assert head == (
        b"POST /a%20b?q=%0d%0a HTTP/1.1\r\nhost: 127.0.0.1:8080\r\nx-custom: yes\tand obs-text \xe9\r\n"
        b"content-length: 4\r\n\r\n"
    )


def test_hop_by_hop_headers_of_the_client_are_dropped() -> None:
    head = encode_head("GET", b"/", HOST, [(b"connection", b"close"), (b"transfer-encoding", b"chunked")], 0)
    assert b"connection" not in head and b"transfer-encoding" not in head


@pytest.mark.parametrize(
    ("method", "target", "headers"),
    [
        ("GET", b"/x HTTP/1.1\r\nHost: a", []),
        ("GET", b"/a\nb", []),
        ("GET", b"/a\x00b", []),
        ("GET", b"/a b", []),
        ("GET", b"/caf\xc3\xa9", []),
        ("GET", b"", []),
        ("GET / HTTP/1.1\r\nX:", b"/", []),
        ("GET", b"/", [(b"x-a", b"1\r\nX-Injected: yes")]),
        ("GET", b"/", [(b"x-a", b"1\nX-Injected: yes")]),
        ("GET", b"/", [(b"x-a", b"nul\x00")]),
        ("GET", b"/", [(b"x-a", b"del\x7f")]),
        ("GET", b"/", [(b"x a", b"1")]),
        ("GET", b"/", [(b"x-a:", b"1")]),
        ("GET", b"/", [(b"", b"1")]),
    ],
)
def test_anything_that_could_split_a_line_is_refused_by_the_encoder(
    method: str, target: bytes, headers: list[tuple[bytes, bytes]]
) -> None:
    assert problem(method, target, headers) is not None
    with pytest.raises(InvalidRequest):
        encode_head(method, target, HOST, headers, 0)


def test_stored_paths_become_safe_targets() -> None:
    assert as_target("/a%0d%0ab") == b"/a%0d%0ab"  # stored raw: kept as it is
    assert as_target("/a\r\nb c") == b"/a%0D%0Ab%20c"  # an older, decoded one: encoded again
    assert as_target("/caf\u00e9") == b"/caf%C3%A9"
    assert as_target("q=\xe9", "latin-1") == b"q=%E9"
    assert as_target("") == b""
