"""The edge's decisions (gateway/edge_choice.py): which gateway takes a call, and the at-most-once rule."""

from __future__ import annotations

from gateway.edge_choice import Gateway, may_resend, pick


def test_pick_takes_the_ready_gateway_with_fewest_in_flight_and_turns_over_ties() -> None:
    a, b, c = Gateway("a", 8080, ready=True), Gateway("b", 8080, ready=True), Gateway("c", 8080, ready=False)
    a.inflight = 3
    assert pick([a, b, c], 0) is b
    b.inflight = 3
    assert {pick([a, b, c], turn) for turn in range(4)} == {a, b}  # never the unready one
    assert pick([a, b, c], 0, avoid=[a, b]) is None
    assert pick([c], 0) is None


def test_only_a_request_that_never_left_or_a_safe_method_is_sent_again() -> None:
    for method in ("GET", "HEAD", "POST", "PUT", "DELETE", "PATCH"):
        assert may_resend(method, sent=False)  # refused or broken before a byte: no gateway has it
    assert may_resend("GET", sent=True) and may_resend("HEAD", sent=True)
    for method in ("POST", "PUT", "DELETE", "PATCH"):
        assert not may_resend(method, sent=True)  # a gateway may have run it


def test_with_none_ready_a_stopping_gateway_still_serving_is_picked_until_it_stops() -> None:
    stopping = Gateway("a", 8080, ready=False, serving_until=10.0)
    ready = Gateway("b", 8080, ready=True)
    assert pick([stopping, ready], 0, now=5.0) is ready  # a ready one always first
    assert pick([stopping], 0, now=5.0) is stopping
    assert pick([stopping], 0, now=10.0) is None  # its time is up: held instead
    assert pick([stopping], 0, avoid=[stopping], now=5.0) is None
