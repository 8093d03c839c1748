"""The connection bound derived from the open-files limit (runtime.edgelimits)."""

from __future__ import annotations

import resource

from runtime.edgelimits import FD_RESERVE, MAX_DEFAULT_CONNECTIONS, default_max_connections, resolve


def test_the_default_leaves_a_descriptor_per_connection_for_its_replica_and_a_reserve() -> None:
    assert default_max_connections(1024) == (1024 - FD_RESERVE) // 2 == 448
    assert 2 * default_max_connections(1024) + FD_RESERVE <= 1024
    assert default_max_connections(1 << 20) == MAX_DEFAULT_CONNECTIONS
    assert default_max_connections(64) == 16


def test_an_explicit_bound_is_kept_and_the_soft_limit_is_raised_to_the_hard_one() -> None:
    assert resolve(3.0, 2048, 77).max_connections == 77
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    assert soft == hard or hard == resource.RLIM_INFINITY
