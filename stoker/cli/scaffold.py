"""``stoker new``: a function folder ready to deploy, added to the ``stack.yml`` beside it.

The stack file is edited as text, not re-dumped, so the user's comments, order and quoting survive: the new
entry goes at the end of the ``functions`` block, at the indentation the file already uses.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from yaml.nodes import MappingNode, ScalarNode

from stoker.config import DEFAULT_GATEWAY
from stoker.names import validate_name
from stoker.stack import compose

HANDLER = '''\
"""{name}: a stoker function.

``handle`` runs once per request. ``event`` has method, path, query, headers and body (bytes). Return a
str or bytes (the body), a dict or list (sent as JSON), or a stoker.handler.Response to choose the status
and headers. An exception becomes a 500 answer and its traceback goes to the function's log.
"""


def handle(event, context):
    who = event.body.decode("utf-8", errors="replace").strip() or "world"
    return f"Hello, {{who}}!\\n"
'''

README = """\
# {name}

A stoker function. Edit `handler.py`, list its packages in `requirements.txt`, then:

```sh
stoker deploy -f {stack} --filter {name}
echo -n stoker | stoker invoke {name}
```
"""

# faas-cli reads this file too (its stack parser accepts provider names openfaas and faas only; stoker reads
# openfaas as well): `stoker deploy` sends the handler folder, `stoker build` tags the image as `image:` says, and
# `faas-cli deploy` then deploys that image.
STACK = """\
version: 1.0
provider:
  name: openfaas
  gateway: {gateway}
functions:
"""

ENTRY = """\
{indent}{name}:
{indent}{indent}lang: python3-http
{indent}{indent}handler: ./{name}
{indent}{indent}image: {name}:latest
"""


class ScaffoldError(ValueError):
    """The function cannot be created (the folder exists, the name is taken, the stack file is unusable)."""


@dataclass
class Scaffolded:
    """What :func:`new_function` created."""

    folder: Path
    stack_file: Path
    stack_created: bool


def new_function(name: str, directory: str | Path = ".", gateway: str = DEFAULT_GATEWAY) -> Scaffolded:
    """Create ``directory/name/`` (handler.py, requirements.txt, README.md); add it to ``stack.yml`` there.

    Raises :class:`stoker.names.InvalidName` for a bad name, :class:`ScaffoldError` when the folder exists or
    the stack file already has the function, and :class:`stoker.stack.StackError` when it is not valid YAML.
    Nothing is written unless everything can be.
    """
    validate_name(name)
    root = Path(directory)
    folder = root / name
    stack_file = root / "stack.yml"
    if folder.exists():
        raise ScaffoldError(f"the folder {folder} already exists; choose another name or remove it")
    created = not stack_file.exists()
    # The new stack text is worked out before anything is written, so a refusal leaves no half-made function.
    text = STACK.format(gateway=gateway) if created else stack_file.read_text(encoding="utf-8")
    text = add_to_stack(text, name, str(stack_file))
    folder.mkdir(parents=True)
    (folder / "handler.py").write_text(HANDLER.format(name=name), encoding="utf-8")
    (folder / "requirements.txt").write_text("", encoding="utf-8")
    (folder / "README.md").write_text(README.format(name=name, stack=stack_file), encoding="utf-8")
    stack_file.write_text(text, encoding="utf-8")
    return Scaffolded(folder=folder, stack_file=stack_file, stack_created=created)


def add_to_stack(text: str, name: str, path: str = "stack.yml") -> str:
    """``text`` with a ``name`` entry (handler ``./name``, image ``name:latest``) appended to its functions block."""
    root = compose(text, path)
    if root is None:
        return text + ("" if text.endswith("\n") or not text else "\n") + "functions:\n" + _entry(name, 2)
    if not isinstance(root, MappingNode):
        raise ScaffoldError(f"{path}: the file is not a mapping; add {name} by hand")
    functions = next((v for k, v in root.value if isinstance(k, ScalarNode) and k.value == "functions"), None)
    if functions is None:
        sep = "" if text.endswith("\n") else "\n"
        return f"{text}{sep}functions:\n{_entry(name, 2)}"
    if isinstance(functions, ScalarNode) and functions.value == "" and functions.style is None:
        # "functions:" with nothing after it: the entries go right below it.
        at = functions.end_mark.index
        return text[:at] + "\n" + _entry(name, 2).rstrip("\n") + text[at:]
    if not isinstance(functions, MappingNode) or functions.flow_style or not functions.value:
        raise ScaffoldError(f"{path}: the functions section is not a block mapping; add {name} by hand")
    if any(isinstance(k, ScalarNode) and k.value == name for k, _ in functions.value):
        raise ScaffoldError(f"{path}: already has a function named {name!r}")
    indent = functions.value[0][0].start_mark.column
    at = functions.end_mark.index  # a block mapping ends where the next section (or the file) starts
    sep = "" if functions.end_mark.column == 0 else "\n"
    return text[:at] + sep + _entry(name, indent) + text[at:]


def _entry(name: str, indent: int) -> str:
    return ENTRY.format(indent=" " * max(indent, 1), name=name)
