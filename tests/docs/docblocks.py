"""The runnable examples of a Markdown page: which fenced blocks to run, write or check, in page order.

A block is marked by an HTML comment on the line just before its fence (GitHub renders nothing for it):

- ``<!-- run -->``: run this ``sh`` block with bash (``set -e``), or this ``python`` block with the virtualenv's Python,
  in the scenario's working folder. Words after ``run`` are tags: ``background`` (start it and leave it running until
  the scenario ends: ``stoker up``), ``docker`` (the page's Docker scenario, run with ``STOKER_TEST_DOCKER=1``),
  ``install`` (creates the virtualenv: run only with ``STOKER_TEST_DOCS_INSTALL=1``, else the test's own virtualenv
  stands in), ``alone`` (the scenario needs no platform started for it), ``fails`` (the example shows an error: a
  non-zero exit status is expected, and ``set -e`` is off), ``timeout=SECONDS``.
- ``<!-- output -->``: what the block run just before prints (standard output and error together). A line ``...`` stands
  for any number of lines, ``...`` inside a line for any text.
- ``<!-- file PATH -->``: write this block to ``PATH`` in the working folder (``docker`` tag: in that scenario).

This module only reads; tests/docs/test_docs_run.py runs what it finds.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path

_MARK = re.compile(r"^<!--\s*(run|output|file)\b(.*?)-->\s*$")
_FENCE = re.compile(r"^(```+|~~~+)\s*([\w+-]*)")


@dataclass
class Block:
    kind: str  # run, output or file
    lang: str  # the fence's language: sh, python, text...
    text: str
    line: int  # 1-based line of the fence, for messages
    tags: set[str] = field(default_factory=set)
    path: str = ""  # for file blocks
    timeout: float = 120.0
    expect: Block | None = None  # the output block checked against this run block

    @property
    def scenario(self) -> str:
        return "docker" if "docker" in self.tags else "local"


def parse(page: Path) -> list[Block]:
    """The marked blocks of ``page`` in order, each output block attached to the run block before it."""
    lines = page.read_text(encoding="utf-8").splitlines()
    blocks: list[Block] = []
    i = 0
    while i < len(lines):
        mark = _MARK.match(lines[i].strip())
        if not mark:
            i += 1
            continue
        fence = _FENCE.match(lines[i + 1]) if i + 1 < len(lines) else None
        if fence is None:
            raise ValueError(f"{page}:{i + 1}: a {mark.group(1)} marker must be followed by a fenced block")
        end = next((j for j in range(i + 2, len(lines)) if lines[j].startswith(fence.group(1))), None)
        if end is None:
            raise ValueError(f"{page}:{i + 2}: unclosed fence")
        words = mark.group(2).split()
        block = Block(mark.group(1), fence.group(2), "\n".join(lines[i + 2 : end]) + "\n", i + 2)
        if block.kind == "file":
            if not words:
                raise ValueError(f"{page}:{i + 1}: <!-- file PATH --> needs a path")
            block.path, words = words[0], words[1:]
        for word in words:
            if word.startswith("timeout="):
                block.timeout = float(word.removeprefix("timeout="))
            else:
                block.tags.add(word)
        if block.kind == "output":
            runs = [b for b in blocks if b.kind == "run"]
            if not runs or blocks[-1].kind != "run":
                raise ValueError(f"{page}:{i + 1}: an output block must follow a run block")
            runs[-1].expect = block
        else:
            blocks.append(block)
        i = end + 1
    return blocks


def matches(expected: str, actual: str) -> bool:
    """Whether ``actual`` is what ``expected`` shows (``...`` lines and ``...`` in a line are wildcards; trailing
    spaces and blank lines at the ends are ignored)."""
    want = _lines(expected)
    got = _lines(actual)
    patterns = [None if w == "..." else re.compile(".*?".join(map(re.escape, w.split("...")))) for w in want]
    # Dynamic programming over (pattern, line): done[i][j] says patterns[i:] match got[j:].
    done = [[False] * (len(got) + 1) for _ in range(len(patterns) + 1)]
    done[len(patterns)][len(got)] = True
    for i in range(len(patterns) - 1, -1, -1):
        for j in range(len(got), -1, -1):
            pattern = patterns[i]
            if pattern is None:
                done[i][j] = done[i + 1][j] or (j < len(got) and done[i][j + 1])
            else:
                done[i][j] = j < len(got) and pattern.fullmatch(got[j]) is not None and done[i + 1][j + 1]
    return done[0][0]


def _lines(text: str) -> list[str]:
    lines = [line.rstrip() for line in text.splitlines()]
    while lines and not lines[-1]:
        lines.pop()
    while lines and not lines[0]:
        lines.pop(0)
    return lines
