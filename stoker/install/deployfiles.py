"""The files in deploy/ are ``stoker install`` output for the default values (tests/install keeps them in step).

Regenerate them with ``python -m stoker.install.deployfiles`` from the repository's root.
"""

from __future__ import annotations

from pathlib import Path

from stoker.install.render import render_text
from stoker.install.values import Values

FILES = {
    "deploy/compose/compose.yaml": "compose",
    "deploy/swarm/stack.yml": "swarm",
    "deploy/kubernetes/stoker.yaml": "kubernetes",
}


def rendered() -> dict[str, str]:
    return {path: render_text(Values(target=target)) for path, target in FILES.items()}


def main(root: Path = Path()) -> None:
    for path, text in rendered().items():
        (root / path).write_text(text)


if __name__ == "__main__":
    main()
