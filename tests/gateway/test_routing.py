"""gateway/routing.py choose(): the fewest in flight, ties rotating from ``start``, endpoints at the limit skipped.

Pure code, so every branch is driven directly with endpoints whose in-flight counts the test sets."""

from __future__ import annotations

from collections import Counter

import pytest

from gateway.routing import choose
from runtime.backends.base import Endpoint


def _endpoints(*inflight: int) -> list[Endpoint]:
    out = []
    for i, n in enumerate(inflight):
        e = Endpoint(f"r{i}", "127.0.0.1", 9000 + i)
        e.inflight = n
        out.append(e)
    return out


def _name(e: Endpoint | None) -> str | None:
    return None if e is None else e.instance


def test_no_endpoints_means_none_whatever_the_offset_or_limit() -> None:
    assert choose([], 0) is None
    assert choose([], 7, limit=3) is None


def test_the_endpoint_with_the_fewest_in_flight_wins_wherever_it_is() -> None:
    eps = _endpoints(3, 1, 2)
    assert [_name(choose(eps, start)) for start in range(3)] == ["r1", "r1", "r1"]
    eps = _endpoints(5, 4, 4, 2)
    assert [_name(choose(eps, start)) for start in range(4)] == ["r3"] * 4


@pytest.mark.parametrize("start", range(8))
def test_idle_endpoints_are_taken_in_turn_from_the_offset(start: int) -> None:
    eps = _endpoints(0, 0, 0)
    assert _name(choose(eps, start)) == f"r{start % 3}"  # an offset past the end wraps around


def test_a_tie_among_busy_endpoints_goes_to_the_first_at_or_after_the_offset() -> None:
    eps = _endpoints(2, 1, 3, 1)
    assert _name(choose(eps, 0)) == "r1"
    assert _name(choose(eps, 2)) == "r3"
    assert _name(choose(eps, 3)) == "r3"
    assert _name(choose(eps, 4)) == "r1"


def test_the_first_idle_endpoint_beats_a_busier_one_seen_before_it() -> None:
    eps = _endpoints(1, 0, 0)
    assert _name(choose(eps, 0)) == "r1"  # r0 (1 in flight) is seen first, r1 (idle) replaces it; r2 is no better
    assert _name(choose(eps, 2)) == "r2"


def test_the_rotation_spreads_calls_evenly_over_equal_replicas() -> None:
    eps = _endpoints(0, 0, 0, 0)
    picks = Counter(_name(choose(eps, turn)) for turn in range(400))
    assert picks == {"r0": 100, "r1": 100, "r2": 100, "r3": 100}


def test_endpoints_at_the_limit_are_skipped_even_when_they_are_the_least_loaded_of_the_rest() -> None:
    eps = _endpoints(2, 3, 2)
    assert _name(choose(eps, 0, limit=3)) == "r0"
    assert _name(choose(eps, 1, limit=3)) == "r2"  # r1 is at the limit: skipped, the next least loaded after it
    assert _name(choose(_endpoints(4, 1), 0, limit=2)) == "r1"  # over the limit counts as at it


def test_when_every_endpoint_is_at_the_limit_none_can_take_the_call() -> None:
    eps = _endpoints(1, 1, 1)
    assert choose(eps, 0, limit=1) is None
    assert choose(_endpoints(5, 9), 1, limit=5) is None


def test_a_limit_of_zero_means_no_limit() -> None:
    eps = _endpoints(100, 50)
    assert _name(choose(eps, 0, limit=0)) == "r1"
    assert _name(choose(eps, 0)) == "r1"


def test_choosing_changes_nothing() -> None:
    eps = _endpoints(1, 0)
    before = [(e.instance, e.inflight) for e in eps]
    choose(eps, 0, limit=1)
    assert [(e.instance, e.inflight) for e in eps] == before  # the caller counts the call in flight, not choose()
