"""The docs runner's reading of pages and outputs (pure: no platform)."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.docs.docblocks import matches, parse


def test_ellipsis_lines_and_ellipsis_inside_a_line() -> None:
    assert matches("a\n...\nd\n", "a\nb\nc\nd\n")
    assert matches("a\n...\nd", "a\nd")
    assert matches("id ...!", "id 1234!")
    assert not matches("a\nd", "a\nb\nd")
    assert not matches("Hello, stoker!", "Hello, docker!")
    assert not matches("x", "x\ny")  # nothing extra printed unless the page says ...


def test_markers_attach_outputs_files_and_tags(tmp_path: Path) -> None:
    page = tmp_path / "p.md"
    page.write_text(
        "text\n<!-- file app.py docker -->\n```python\nprint(1)\n```\n"
        "<!-- run fails timeout=5 -->\n```sh\nfalse\n```\n<!-- output -->\n```\nno\n```\n```sh\nnot run\n```\n"
    )
    file, run = parse(page)
    assert (file.kind, file.path, file.scenario, file.text) == ("file", "app.py", "docker", "print(1)\n")
    assert (run.kind, run.tags, run.timeout, run.scenario) == ("run", {"fails"}, 5.0, "local")
    assert run.expect is not None and run.expect.text == "no\n"


def test_an_output_block_needs_a_run_block_before_it(tmp_path: Path) -> None:
    page = tmp_path / "p.md"
    page.write_text("<!-- output -->\n```\nx\n```\n")
    with pytest.raises(ValueError, match="must follow a run block"):
        parse(page)
