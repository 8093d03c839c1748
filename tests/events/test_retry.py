from __future__ import annotations

from events.retry import RetryPolicy, Verdict, backoff, decide


def test_backoff_doubles_from_base_and_is_capped() -> None:
    policy = RetryPolicy(attempts=10, base_s=0.5, cap_s=3.0)
    assert [backoff(policy, n) for n in range(1, 6)] == [0.5, 1.0, 2.0, 3.0, 3.0]


def test_success_acks_and_failures_retry_until_the_last_attempt() -> None:
    policy = RetryPolicy(attempts=3, base_s=1.0, cap_s=60.0)
    assert decide(policy, 200, 1) == (Verdict.ACK, 0.0)
    assert decide(policy, 204, 3) == (Verdict.ACK, 0.0)
    assert decide(policy, 500, 1) == (Verdict.RETRY, 1.0)
    assert decide(policy, 503, 2) == (Verdict.RETRY, 2.0)
    assert decide(policy, 502, 3) == (Verdict.DEAD, 0.0)


def test_timeouts_429_and_connection_errors_are_retried_but_client_errors_are_not() -> None:
    policy = RetryPolicy(attempts=5)
    for status in (0, 408, 429, 504):
        assert decide(policy, status, 1)[0] is Verdict.RETRY
    for status in (400, 404, 413):
        assert decide(policy, status, 1)[0] is Verdict.DEAD
