"""gateway/jsonbody.py's pure part: nesting and structure measured on the bytes agree with the decoded document."""

from __future__ import annotations

import json
import random
from typing import Any

import pytest

from gateway.jsonbody import JsonLimits, nesting_exceeds, outside_strings, parse
from stoker.errors import InvalidRequest, PayloadTooLarge

LIMITS = JsonLimits(body_bytes=1 << 20, structure_bytes=1 << 20, depth=64)


def _depth(value: Any) -> int:
    if isinstance(value, list):
        return 1 + max((_depth(v) for v in value), default=0)
    if isinstance(value, dict):
        return 1 + max((_depth(v) for v in value.values()), default=0)
    return 0


def _tree(rnd: random.Random, levels: int) -> Any:
    if levels == 0 or rnd.random() < 0.25:
        return rnd.choice([1, -2.5, None, True, "", "a[{", "]}", 'say "hi"', "back\\slash", "\u00e9\U0001f600"])
    if rnd.random() < 0.5:
        return [_tree(rnd, levels - 1) for _ in range(rnd.randint(0, 3))]
    return {f"k{i}[{{": _tree(rnd, levels - 1) for i in range(rnd.randint(0, 3))}


def test_nesting_measured_on_the_bytes_is_the_decoded_depth() -> None:
    rnd = random.Random(11)
    for _ in range(3000):
        value = _tree(rnd, rnd.randint(0, 10))
        for text in (json.dumps(value), json.dumps(value, indent=2, ensure_ascii=False)):
            structure = outside_strings(text.encode())
            for limit in range(12):
                assert nesting_exceeds(structure, limit) == (_depth(value) > limit), (text, limit)


def test_outside_strings_leaves_one_byte_per_string() -> None:
    assert outside_strings(b'{"a": ["[[", "b"]}') == b"{0: [0, 0]}"
    assert outside_strings(b'{"a\\"[": "\\\\"}') == b"{0: 0}"


@pytest.mark.parametrize("levels", [1, 63, 64])
def test_up_to_the_depth_parses(levels: int) -> None:
    assert _depth(parse(b"[" * levels + b"]" * levels, LIMITS)) == levels


@pytest.mark.parametrize(
    "raw",
    [b"[" * 65 + b"]" * 65, b"[" * 100_000, b'{"a":' * 65 + b"1" + b"}" * 65, b"[{}," * 70 + b"1" + b"]" * 70],
)
def test_deeper_is_400_without_decoding(raw: bytes) -> None:
    with pytest.raises(InvalidRequest, match="deeper than 64"):
        parse(raw, LIMITS)


@pytest.mark.parametrize(
    "raw", [b"NaN", b"[-Infinity]", b'"\\udc00"', b'{"k\\ud800": 1}', b"\xff", b"{", b"[1,]", b"1 2"]
)
def test_anything_but_strict_json_is_400(raw: bytes) -> None:
    with pytest.raises(InvalidRequest):
        parse(raw, LIMITS)


def test_surrogate_pairs_are_characters() -> None:
    assert parse(b'["\\ud83d\\ude00"]', LIMITS) == ["\U0001f600"]


def test_size_and_structure_limits_are_413() -> None:
    limits = JsonLimits(body_bytes=1 << 20, structure_bytes=1 << 10, depth=64)
    with pytest.raises(PayloadTooLarge, match="over the limit"):
        parse(b" " * (limits.body_bytes + 1), limits)
    big_string = b'"' + b"x" * (limits.structure_bytes * 4) + b'"'
    assert len(parse(big_string, limits)) == limits.structure_bytes * 4  # strings do not count
    with pytest.raises(PayloadTooLarge, match="outside its strings"):
        parse(b"[" + b"0," * limits.structure_bytes + b"0]", limits)


def test_an_empty_body_is_the_given_default() -> None:
    assert parse(b"", LIMITS) is None and parse(b" \n", LIMITS, {}) == {} and parse(b"null", LIMITS, {}) is None
