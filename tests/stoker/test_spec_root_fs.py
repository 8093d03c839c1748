"""readOnlyRootFilesystem is three-valued, and stored deployments from before that keep running read-only."""

from __future__ import annotations

import pytest

from stoker.spec import STORED_FORMAT, FunctionDeployment


@pytest.mark.parametrize(("sent", "kept", "read_only"), [(None, None, True), (True, True, True), (False, False, False)])
def test_the_field_is_absent_true_or_false(sent: bool | None, kept: bool | None, read_only: bool) -> None:
    body = {"service": "f", "image": "x"} | ({} if sent is None else {"readOnlyRootFilesystem": sent})
    dep = FunctionDeployment.from_json(body)
    assert dep.readOnlyRootFilesystem is kept and dep.read_only_root is read_only
    assert FunctionDeployment.from_stored(dep.to_stored()).readOnlyRootFilesystem is kept  # round trip


def test_a_false_stored_before_the_format_key_is_read_as_not_given() -> None:
    # Every deployment stored before format 2 carried false when it did not say: those always ran read-only.
    legacy = {"service": "f", "image": "x", "readOnlyRootFilesystem": False}
    dep = FunctionDeployment.from_stored(legacy)
    assert dep.readOnlyRootFilesystem is None and dep.read_only_root
    assert FunctionDeployment.from_stored({**legacy, "readOnlyRootFilesystem": True}).readOnlyRootFilesystem is True
    assert FunctionDeployment.from_stored({**legacy, STORED_FORMAT: 2}).readOnlyRootFilesystem is False
