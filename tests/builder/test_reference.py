"""Image references, content tags and requirement keys: pure decisions, no engine needed."""

from __future__ import annotations

import pytest

from builder.pip import has_requirements, requirements_key
from builder.reference import content_tag, faas_cli_reference, has_tag, repository_for, validate_reference
from stoker.errors import InvalidRequest


@pytest.mark.parametrize(
    "ref",
    ["nginx", "library/nginx:1.25", "localhost:5000/team/fn:abc", "ghcr.io/o/f@sha256:" + "a" * 64, "a_b.c-d/e"],
)
def test_valid_references_pass(ref: str) -> None:
    assert validate_reference(ref) == ref


@pytest.mark.parametrize("ref", ["", "Upper/case", "bad image", "a::b", "-lead", "name:", " space", "x:" + "t" * 200])
def test_invalid_references_are_refused_with_the_reference_in_the_message(ref: str) -> None:
    with pytest.raises(InvalidRequest) as err:
        validate_reference(ref)
    assert "image" in str(err.value)


def test_tags_and_repositories() -> None:
    assert has_tag("host:5000/name:v1") and not has_tag("host:5000/name") and has_tag("n@sha256:" + "0" * 64)
    assert repository_for("hello") == "stoker-fn/hello"
    assert repository_for("hello", "registry.local:5000/") == "registry.local:5000/stoker-fn/hello"


def test_content_tag_is_stable_and_separates_parts() -> None:
    assert content_tag(["a", b"b"]) == content_tag([b"a", "b"])
    assert content_tag(["ab", ""]) != content_tag(["a", "b"])  # length-prefixed: no ambiguity across parts
    assert len(content_tag(["x"])) == 16


def test_requirements_key_ignores_comments_and_blank_lines() -> None:
    assert requirements_key("six==1.16.0\n\n# pinned\n") == requirements_key("  six==1.16.0  # why\n")
    assert requirements_key("six") != requirements_key("six==1.16.0")
    assert not has_requirements("# nothing\n\n") and has_requirements("six\n")


@pytest.mark.parametrize(
    ("image", "tagged"),
    [
        ("hello", ("hello", "latest")),  # faas-cli's BuildImageName appends :latest
        ("hello:1.2", ("hello", "1.2")),
        ("registry.example/team/hello", ("registry.example/team/hello", "latest")),
        ("localhost:5000/hello", ("localhost:5000/hello", "latest")),  # has a ':', sent as is; the engine's latest
        ("localhost:5000/hello:v1", ("localhost:5000/hello", "v1")),
    ],
)
def test_the_image_faas_cli_deploy_names(image: str, tagged: tuple[str, str]) -> None:
    assert faas_cli_reference(image) == tagged


@pytest.mark.parametrize("image", ["Hello", "hello:", "hello@sha256:" + "a" * 64, "a b"])
def test_an_image_that_cannot_be_tagged_is_refused(image: str) -> None:
    with pytest.raises(InvalidRequest):
        faas_cli_reference(image)
