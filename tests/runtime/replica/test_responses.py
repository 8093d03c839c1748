"""Return-value conversion edge cases (the common cases are tested end to end in test_server.py)."""

from __future__ import annotations

from typing import Any

import pytest

from runtime.replica.responses import BadReturn, render
from stoker.handler import Response


def test_content_type_set_by_the_handler_wins_in_any_case() -> None:
    _, headers, _ = render(Response(b"<x/>", 200, {"content-TYPE": "application/xml"}))
    assert headers == [(b"content-TYPE", b"application/xml")]


def test_content_length_from_the_handler_is_dropped() -> None:
    assert render(Response("abc", 200, {"Content-Length": "10"}))[1] == [
        (b"content-type", b"text/plain; charset=utf-8")
    ]


def test_python3_http_headers_as_pairs_and_numeric_body() -> None:
    status, headers, body = render({"statusCode": 201, "body": 42, "headers": [("X-A", "1"), ("X-A", "2")]})
    assert (status, body) == (201, b"42")
    assert headers[:2] == [(b"X-A", b"1"), (b"X-A", b"2")]


def test_json_keeps_unicode() -> None:
    assert render({"name": "Zoë"})[2] == '{"name": "Zoë"}'.encode()


@pytest.mark.parametrize(
    ("value", "message"),
    [
        (Response("x", 99), "status 99 is not an HTTP status code"),
        ({"statusCode": "200", "body": "x"}, "status '200' is not an HTTP status code"),
        (Response("x", 200, {"X-Name": "café ☕"}), "header 'X-Name': 'café ☕' is not latin-1 text"),
        (
            Response("x", 200, {"Bad Name": "v"}),
            "header 'Bad Name': 'v' contains characters HTTP does not allow",
        ),
        (Response(body={1, 2}), "response body is set"),  # type: ignore[arg-type]
        ({"statusCode": 200, "headers": "X-A: 1"}, "headers are str; use a dict of strings"),
        (3.5, "handler returned float"),
    ],
)
def test_unsendable_values(value: Any, message: str) -> None:
    with pytest.raises(BadReturn) as info:
        render(value)
    assert str(info.value).startswith(message)


def test_unserializable_json_is_a_type_error() -> None:
    with pytest.raises(TypeError, match="not JSON serializable"):
        render({"when": object()})
