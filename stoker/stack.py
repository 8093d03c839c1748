"""Stack files (``stack.yml``) in the OpenFaaS format, read into :class:`StackFunction` objects.

An OpenFaaS stack deploys unchanged: ``provider.name`` may be ``stoker`` or ``openfaas``, every faas-cli
function field is accepted (those only faas-cli's build uses, such as ``skip_build``, are ignored), and
``${VAR}``, ``${VAR:-default}`` and ``${VAR:?message}`` are substituted from the environment as faas-cli does
(``$${`` writes a literal ``${``).

The file is read with :func:`yaml.compose` rather than ``safe_load`` so every node keeps its position: each
:class:`StackError` starts with ``file:line:``, for YAML syntax errors and semantic ones alike.
"""

from __future__ import annotations

import fnmatch
import os
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml
from yaml.nodes import MappingNode, Node, ScalarNode, SequenceNode

from stoker.errors import InvalidRequest
from stoker.names import DEFAULT_NAMESPACE, InvalidName, validate_name
from stoker.spec import DEFAULT_ENTRYPOINT, ENTRYPOINT, FunctionDeployment, FunctionSettings

PROVIDERS = ("stoker", "openfaas")
_TOP_LEVEL = {"version", "provider", "functions", "configuration"}
# The faas-cli fields stoker reads, then those only faas-cli's build uses (accepted so OpenFaaS stacks load).
_FUNCTION_FIELDS = {
    "lang", "handler", "image", "fprocess", "environment", "environment_file", "labels", "annotations",
    "secrets", "limits", "requests", "readonly_root_filesystem", "build_args", "constraints", "namespace",
}  # fmt: skip
_FAAS_CLI_ONLY = {"skip_build", "build_options", "build_secrets", "registry_auth", "platforms"}
_RESOURCES = ("memory", "cpu")
_NULL = "tag:yaml.org,2002:null"
_BOOL = "tag:yaml.org,2002:bool"
_MERGE = "tag:yaml.org,2002:merge"
_VAR = re.compile(r"\$\$\{|\$\{([A-Za-z_][A-Za-z0-9_]*)(?:(:?[-?])([^}]*))?\}|\$\{")


class StackError(InvalidRequest, ValueError):
    """A stack file that cannot be used; the message starts with ``file:line:`` and says what is wrong."""

    def __init__(self, message: str, path: str = "", line: int = 0) -> None:
        super().__init__(message)
        self.path = path
        self.line = line


@dataclass
class StackFunction:
    """One function of a stack file, with paths resolved against the stack file's folder."""

    name: str
    handler_dir: Path | None = None  # the folder uploaded as source; None deploys ``image`` only
    image: str = ""
    namespace: str = ""  # empty: the CLI's --namespace, else the gateway's default
    lang: str = ""
    env_process: str = ""
    env: dict[str, str] = field(default_factory=dict)
    labels: dict[str, str] = field(default_factory=dict)
    annotations: dict[str, str] = field(default_factory=dict)
    secrets: list[str] = field(default_factory=list)
    limits: dict[str, str] = field(default_factory=dict)
    requests: dict[str, str] = field(default_factory=dict)
    readonly_root_filesystem: bool | None = None  # None: not given (read-only on the container backends)
    constraints: list[str] = field(default_factory=list)
    build_args: dict[str, str] = field(default_factory=dict)
    line: int = 0  # where the function is defined, for messages

    def deployment(self, source_b64: str = "") -> FunctionDeployment:
        """The management-API wire type for this function (see :mod:`stoker.spec`). With a handler folder, no
        image: its ``image:`` names what ``stoker build`` tags and ``faas-cli deploy`` sends; stoker itself deploys
        the folder."""
        return FunctionDeployment(
            service=self.name,
            namespace=self.namespace or DEFAULT_NAMESPACE,
            image="" if self.handler_dir is not None else self.image,
            envProcess=self.env_process,
            envVars=dict(self.env),
            constraints=list(self.constraints),
            secrets=list(self.secrets),
            labels=dict(self.labels),
            annotations=dict(self.annotations),
            limits=dict(self.limits),
            requests=dict(self.requests),
            readOnlyRootFilesystem=self.readonly_root_filesystem,
            source=source_b64,
        )

    def to_deployment(self, source_b64: str = "") -> dict[str, Any]:
        """The JSON body of ``POST/PUT /system/functions`` (OpenFaaS field names plus stoker's ``source``)."""
        return self.deployment(source_b64).to_json()


@dataclass
class Stack:
    """A parsed stack file."""

    path: Path
    version: str = ""
    provider: str = "stoker"
    gateway: str = ""  # empty when the file names none
    functions: list[StackFunction] = field(default_factory=list)

    def select(self, pattern: str | None) -> list[StackFunction]:
        """Functions whose name matches the glob ``pattern`` (all when None); StackError when none does."""
        chosen = filter_functions(self.functions, pattern)
        if not chosen:
            raise StackError(f"{self.path}: no function matches --filter {pattern!r}", str(self.path))
        return chosen


def filter_functions(functions: Iterable[StackFunction], pattern: str | None) -> list[StackFunction]:
    """Functions whose name matches the shell glob ``pattern`` (``*``, ``?``, ``[a-c]``), like faas-cli."""
    return [f for f in functions if pattern is None or fnmatch.fnmatchcase(f.name, pattern)]


def load_stack(path: str | os.PathLike[str], environ: Mapping[str, str] = os.environ) -> Stack:
    """Read and validate the stack file at ``path``; raise :class:`StackError` naming ``file:line``."""
    shown = str(path)
    try:
        text = Path(path).read_text(encoding="utf-8")
    except FileNotFoundError:
        raise StackError(f"{shown}: no such file", shown) from None
    except (OSError, UnicodeDecodeError) as exc:
        raise StackError(f"{shown}: cannot read: {exc}", shown) from None
    return parse_stack(text, shown, Path(path).parent, environ)


def compose(text: str, path: str = "stack.yml") -> Node | None:
    """The YAML node tree of ``text`` without substitution (for tools that edit the file in place).

    Raises :class:`StackError` naming ``path:line`` on a syntax error; None for an empty document.
    """
    return _Reader(path, Path("."), {}).compose(text, path, substitute=False)


def parse_stack(
    text: str,
    path: str = "stack.yml",
    base_dir: str | os.PathLike[str] = ".",
    environ: Mapping[str, str] = os.environ,
) -> Stack:
    """Validate stack-file ``text``; ``path`` is for messages, handlers resolve against ``base_dir``."""
    return _Reader(path, Path(base_dir), environ).stack(text)


class _Reader:
    """Walks the composed YAML nodes of one stack file, failing with the position of the offending node."""

    def __init__(self, path: str, base_dir: Path, environ: Mapping[str, str]) -> None:
        self.path = path
        self.base_dir = base_dir
        self.environ = environ

    # -- errors and node access -------------------------------------------------------------------

    def fail(self, node: Node | None, message: str, function: str | None = None) -> StackError:
        line = node.start_mark.line + 1 if node is not None else 0
        where = f"{self.path}:{line}" if line else self.path
        prefix = f'function "{function}": ' if function is not None else ""
        return StackError(f"{where}: {prefix}{message}", self.path, line)

    def compose(self, text: str, path: str, substitute: bool = True) -> Node | None:
        try:
            node = yaml.compose(text, Loader=yaml.SafeLoader)
        except yaml.MarkedYAMLError as exc:
            mark = exc.problem_mark or exc.context_mark
            line = mark.line + 1 if mark else 0
            problem = exc.problem or exc.context or "invalid YAML"
            col = f" (column {mark.column + 1})" if mark else ""
            raise StackError(f"{path}:{line}: invalid YAML: {problem}{col}", path, line) from None
        except yaml.YAMLError as exc:  # e.g. control characters, reported without a mark
            raise StackError(f"{path}: invalid YAML: {exc}", path) from None
        if node is not None and substitute:
            self.substitute(node, set())
        return node

    def substitute(self, node: Node, seen: set[int]) -> None:
        """Expand ``${VAR}`` forms in every scalar, in place; aliases share nodes, so each is visited once."""
        if id(node) in seen:
            return
        seen.add(id(node))
        if isinstance(node, ScalarNode):
            if "$" in node.value:
                node.value = self.expand(node, node.value)
                if node.style is None:  # a plain scalar's type follows its new text, as if it were written so
                    node.tag = yaml.SafeLoader("").resolve(ScalarNode, node.value, (True, False))  # type: ignore[no-untyped-call]
        elif isinstance(node, SequenceNode):
            for item in node.value:
                self.substitute(item, seen)
        elif isinstance(node, MappingNode):
            for key, value in node.value:
                self.substitute(key, seen)
                self.substitute(value, seen)

    def expand(self, node: Node, text: str) -> str:
        def one(m: re.Match[str]) -> str:
            whole, var, op, arg = m.group(0), m.group(1), m.group(2), m.group(3) or ""
            if whole == "$${":
                return "${"
            if var is None:
                raise self.fail(node, f"invalid variable reference in {text!r}; use ${{NAME:-default}}")
            value = self.environ.get(var)
            unset = value is None or (op is not None and op.startswith(":") and value == "")
            if op in ("-", ":-"):
                return arg if unset else str(value)
            if op in ("?", ":?") and unset:
                raise self.fail(node, f"${{{var}}}: {arg or var + ' is not set'}")
            return value or ""

        return _VAR.sub(one, text)

    def mapping(self, node: Node, what: str, function: str | None = None) -> list[tuple[str, Node, Node]]:
        """``(key, key_node, value_node)`` items of a mapping, refusing non-scalar and repeated keys."""
        if not isinstance(node, MappingNode):
            raise self.fail(node, f"{what or 'its settings'} must be a mapping, not {_kind(node)}", function)
        prefix = f"{what}: " if what else ""
        items: list[tuple[str, Node, Node]] = []
        merged: list[tuple[str, Node, Node]] = []
        seen: set[str] = set()
        for key, value in node.value:
            if key.tag == _MERGE:  # "<<: *defaults", common for shared environment and labels
                sources = value.value if isinstance(value, SequenceNode) else [value]
                for source in sources:
                    merged += self.mapping(source, f"{prefix}the merged value", function)
                continue
            if not isinstance(key, ScalarNode):
                raise self.fail(key, f"{prefix}keys must be plain strings", function)
            if key.value in seen:  # PyYAML would silently keep the last one
                raise self.fail(key, f"{prefix}{key.value!r} is given twice", function)
            seen.add(key.value)
            items.append((key.value, key, value))
        # Keys given here win over merged ones, and the first merged source over later ones.
        for item in merged:
            if item[0] not in seen:
                seen.add(item[0])
                items.append(item)
        return items

    def string(self, node: Node, what: str, function: str | None = None) -> str:
        if isinstance(node, ScalarNode):
            return "" if node.tag == _NULL else str(node.value)
        raise self.fail(node, f"{what} must be a string, not {_kind(node)}", function)

    def str_map(self, node: Node, what: str, function: str | None = None) -> dict[str, str]:
        if isinstance(node, ScalarNode) and node.tag == _NULL:
            return {}
        # Values keep their literal text ("1.0" stays "1.0", true stays "true"), like faas-cli.
        return {k: self.string(v, f"{what}.{k}", function) for k, _, v in self.mapping(node, what, function)}

    def str_list(self, node: Node, what: str, function: str | None = None) -> list[tuple[str, Node]]:
        if isinstance(node, ScalarNode) and node.tag == _NULL:
            return []
        if not isinstance(node, SequenceNode):
            raise self.fail(node, f"{what} must be a list, not {_kind(node)}", function)
        return [(self.string(item, f"{what} item", function), item) for item in node.value]

    def boolean(self, node: Node, what: str, function: str | None = None) -> bool:
        if isinstance(node, ScalarNode) and node.tag == _NULL:
            return False
        if isinstance(node, ScalarNode) and node.tag == _BOOL:
            return bool(yaml.SafeLoader("").construct_yaml_bool(node))
        raise self.fail(node, f"{what} must be true or false", function)

    # -- the stack --------------------------------------------------------------------------------

    def stack(self, text: str) -> Stack:
        root = self.compose(text, self.path)
        if root is None:
            raise StackError(f"{self.path}: the file is empty; it needs a functions section", self.path)
        stack = Stack(path=Path(self.path))
        functions_node: Node | None = None
        for key, key_node, value in self.mapping(root, "the stack file"):
            if key == "version":
                stack.version = self.string(value, "version")
            elif key == "provider":
                self.provider(value, stack)
            elif key == "functions":
                functions_node = value
            elif key not in _TOP_LEVEL and not key.startswith("x-"):  # x-*: free, e.g. to hold anchors
                expected = ", ".join(sorted(_TOP_LEVEL))
                raise self.fail(key_node, f"unknown section {key!r}; expected one of: {expected}")
        if functions_node is None:
            raise self.fail(root, "no functions section")
        entries = self.mapping(functions_node, "functions")
        if not entries:
            raise self.fail(functions_node, "the functions section is empty")
        stack.functions = [self.function(name, key_node, value) for name, key_node, value in entries]
        return stack

    def provider(self, node: Node, stack: Stack) -> None:
        for key, key_node, value in self.mapping(node, "provider"):
            if key == "name":
                stack.provider = self.string(value, "provider.name")
                if stack.provider not in PROVIDERS:
                    raise self.fail(
                        value,
                        f"provider name {stack.provider!r} is not supported; use {' or '.join(PROVIDERS)}",
                    )
            elif key == "gateway":
                stack.gateway = self.string(value, "provider.gateway").rstrip("/")
            elif key != "network":  # network: an old faas-cli (Swarm) field, ignored
                raise self.fail(key_node, f"provider: unknown field {key!r}; expected name or gateway")

    def function(self, name: str, key_node: Node, node: Node) -> StackFunction:
        try:
            validate_name(name)
        except InvalidName as exc:
            raise self.fail(key_node, str(exc), name) from None
        if isinstance(node, ScalarNode) and node.tag == _NULL:
            raise self.fail(key_node, "has no settings; give a handler folder or an image", name)
        fn = StackFunction(name=name, line=key_node.start_mark.line + 1)
        handler_node: Node | None = None
        field_nodes: dict[str, Node] = {}
        env_files: list[tuple[str, Node]] = []
        for key, field_node, value in self.mapping(node, "", name):
            field_nodes[key] = value
            if key == "handler":
                handler_node = value
            elif key == "environment_file":
                env_files = self.str_list(value, key, name)
            elif key in _FUNCTION_FIELDS:
                self.field(fn, key, value)
            elif key not in _FAAS_CLI_ONLY:
                raise self.fail(field_node, f"unknown field {key!r}", name)
        for file, file_node in env_files:
            # Like faas-cli: each environment file overrides the inline environment, in order.
            fn.env.update(self.environment_file(file, file_node, name))
        handler = self.string(handler_node, "handler", name) if handler_node is not None else ""
        if handler:
            assert handler_node is not None
            fn.handler_dir = self.handler_dir(fn, handler, handler_node)
        elif not fn.image:
            raise self.fail(key_node, "has neither a handler folder nor an image", name)
        try:
            FunctionSettings.from_deployment(
                fn.deployment("-")
            )  # scaling and com.stoker.* labels, checked here to name the line
        except InvalidRequest as exc:
            culprit = str(exc).partition(":")[0].partition(" ")[0]
            holders = [n for k, n in field_nodes.items() if k in ("annotations", "labels")]
            where = next((n for n in holders if culprit in self.str_map(n, "")), key_node)
            raise self.fail(where, str(exc), name) from None
        return fn

    def field(self, fn: StackFunction, key: str, value: Node) -> None:
        name = fn.name
        if key in ("lang", "image", "fprocess"):
            setattr(
                fn,
                {"lang": "lang", "image": "image", "fprocess": "env_process"}[key],
                self.string(value, key, name),
            )
        elif key == "environment":
            fn.env.update(self.str_map(value, key, name))
        elif key in ("labels", "annotations", "build_args"):
            setattr(fn, key, self.str_map(value, key, name))
        elif key in ("limits", "requests"):
            resources = self.str_map(value, key, name)
            for res, res_node, _ in self.mapping(value, key, name) if resources else []:
                if res not in _RESOURCES:
                    raise self.fail(res_node, f"{key}: unknown resource {res!r}; use memory or cpu", name)
            setattr(fn, key, resources)
        elif key == "secrets":
            fn.secrets = [self.name(s, node, "secret", name) for s, node in self.str_list(value, key, name)]
        elif key == "constraints":
            fn.constraints = [c for c, _ in self.str_list(value, key, name)]
        elif key == "namespace":
            fn.namespace = self.name(self.string(value, key, name), value, "namespace", name)
        elif key == "readonly_root_filesystem":
            given = not (isinstance(value, ScalarNode) and value.tag == _NULL)
            fn.readonly_root_filesystem = self.boolean(value, key, name) if given else None

    def name(self, value: str, node: Node, kind: str, function: str) -> str:
        if kind == "namespace" and not value:
            return ""
        try:
            return validate_name(value, kind)
        except InvalidName as exc:
            raise self.fail(node, str(exc), function) from None

    def handler_dir(self, fn: StackFunction, handler: str, node: Node) -> Path | None:
        folder = (self.base_dir / handler).resolve()
        if not folder.is_dir():
            what = "is not a folder" if folder.exists() else "does not exist"
            raise self.fail(node, f"handler folder {handler!r} {what} (looked for {folder})", fn.name)
        entry = fn.annotations.get(ENTRYPOINT) or fn.labels.get(ENTRYPOINT) or DEFAULT_ENTRYPOINT
        module = entry.partition(":")[0].replace(".", "/")
        if (folder / f"{module}.py").is_file() or (folder / module / "__init__.py").is_file():
            return folder
        if fn.image:
            return None  # an image-based function (OpenFaaS template in another language): deploy the image
        raise self.fail(node, f"handler folder {handler!r} has no {module}.py (looked in {folder})", fn.name)

    def environment_file(self, file: str, node: Node, function: str) -> dict[str, str]:
        path = self.base_dir / file
        try:
            text = path.read_text(encoding="utf-8")
        except OSError as exc:
            message = f"environment_file {file!r}: cannot read {path}: {exc.strerror}"
            raise self.fail(node, message, function) from None
        sub = _Reader(str(path), self.base_dir, self.environ)
        root = sub.compose(text, str(path))
        if root is None:
            return {}
        for key, key_node, value in sub.mapping(root, "the environment file"):
            if key != "environment":
                raise sub.fail(key_node, f"unknown section {key!r}; expected only 'environment'")
            return sub.str_map(value, "environment")
        return {}


def _kind(node: Node) -> str:
    if isinstance(node, MappingNode):
        return "a mapping"
    if isinstance(node, SequenceNode):
        return "a list"
    if isinstance(node, ScalarNode) and node.tag == _NULL:
        return "empty"
    return f"the value {node.value!r}"
