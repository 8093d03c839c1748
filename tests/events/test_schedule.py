from __future__ import annotations

import pytest

from events.schedule import ScheduleError, deployment_problem, due_ticks, problem, schedule_of, validate


def test_openfaas_cron_connector_annotations_and_stokers_own() -> None:
    assert schedule_of({}, {"topic": "cron-function", "schedule": "*/5 * * * *"}) == "*/5 * * * *"
    assert schedule_of({"com.stoker.schedule": "0 * * * *"}, {}) == "0 * * * *"
    assert schedule_of({}, {"schedule": "*/5 * * * *"}) is None  # without the cron-function topic
    assert schedule_of({}, {}) is None


def test_due_ticks_in_a_window_with_time_passed_in() -> None:
    assert due_ticks("*/5 * * * *", after=0, now=299) == []
    assert due_ticks("*/5 * * * *", after=0, now=300) == [300.0]
    assert due_ticks("*/5 * * * *", after=300, now=301) == []  # the same tick is not due twice
    assert due_ticks("* * * * * */10", after=100, now=125) == [120.0]  # seconds field; only the latest missed


def test_a_bad_expression_is_a_clear_error() -> None:
    with pytest.raises(ScheduleError, match="not a cron expression"):
        validate("every five minutes")


def test_an_expression_that_parses_but_never_fires_is_refused_once_computed() -> None:
    assert problem("0 0 31 2 *") is not None and "never fires" in str(problem("0 0 31 2 *"))
    assert "never fires" in str(deployment_problem({}, {"topic": "cron-function", "schedule": "0 0 30 2 *"}))
    assert problem("0 0 29 2 *", now=1_700_000_000) is None  # leap days exist
    assert deployment_problem({}, {"com.stoker.schedule": "*/5 * * * *"}) is None
