"""No import circles, between modules or between packages, anywhere in the project.

Every import counts, wherever it stands (inside a function, under ``TYPE_CHECKING``): a lazy import hides a circle
from Python, not from a reader. Package level: a module belongs to the package that holds it; a parent package's
shared modules may be imported by its subpackages, so the parent's modules must not import the subpackages back (a
name -> "module:Class" table, as :mod:`runtime.backends` has, is not an import). Two edges are not circles at package
level: a package's ``__init__`` re-exporting its own subpackages (its public face, as ``stoker`` does with the SDK;
the module-level check still sees through it), a ``__main__`` entry point, which nothing imports, and a composition
root (:data:`COMPOSITION_ROOTS`: the module that assembles a package and its subpackages into one application, as
``gateway.app`` builds the proxy, the API and the console); a test checks that nothing below a root imports it back.
"""

from __future__ import annotations

import ast
from collections.abc import Iterable
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PACKAGES = ("stoker", "gateway", "builder", "runtime", "autoscaler", "events", "bench")
COMPOSITION_ROOTS = frozenset({"gateway.app", "gateway.server"})


def project_modules() -> dict[str, Path]:
    modules = {}
    for package in PACKAGES:
        for path in sorted((ROOT / package).rglob("*.py")):
            parts = list(path.relative_to(ROOT).with_suffix("").parts)
            if parts[-1] == "__init__":
                parts.pop()
            modules[".".join(parts)] = path
    return modules


def is_package(path: Path) -> bool:
    return path.name == "__init__.py"


def imports(module: str, path: Path, known: dict[str, Path]) -> set[str]:
    """The project modules ``module`` imports (``from pkg import sub`` counts as ``pkg.sub`` when that is a module)."""
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            names = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = module.split(".") if is_package(path) else module.split(".")[:-1]
                anchor = anchor[: len(anchor) - (node.level - 1)]
                base = ".".join([*anchor, base] if base else anchor)
            names = [f"{base}.{alias.name}" if f"{base}.{alias.name}" in known else base for alias in node.names]
        else:
            continue
        for name in names:
            while name and name not in known:
                name = name.rpartition(".")[0]
            if name and name != module:
                found.add(name)
    return found


def cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components with more than one node (Tarjan), each sorted."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []

    def visit(node: str) -> None:
        index[node] = low[node] = len(index)
        stack.append(node)
        on_stack.add(node)
        for nxt in graph.get(node, ()):
            if nxt not in index:
                visit(nxt)
                low[node] = min(low[node], low[nxt])
            elif nxt in on_stack:
                low[node] = min(low[node], index[nxt])
        if low[node] == index[node]:
            component = []
            while True:
                top = stack.pop()
                on_stack.discard(top)
                component.append(top)
                if top == node:
                    break
            if len(component) > 1:
                found.append(sorted(component))

    for node in sorted(graph):
        if node not in index:
            visit(node)
    return found


def module_graph() -> dict[str, set[str]]:
    known = project_modules()
    return {module: imports(module, path, known) for module, path in known.items()}


def package_graph(modules: dict[str, set[str]]) -> dict[str, set[str]]:
    known = project_modules()

    def package(module: str) -> str:
        return module if is_package(known[module]) else module.rpartition(".")[0] or module

    graph: dict[str, set[str]] = {}
    for module, targets in modules.items():
        if module.endswith(".__main__") or module in COMPOSITION_ROOTS:
            continue
        edges = graph.setdefault(package(module), set())
        facade = is_package(known[module])
        edges.update(
            package(t) for t in targets if package(t) != package(module) and not (facade and t.startswith(module + "."))
        )
    return graph


def describe(found: Iterable[list[str]]) -> str:
    return "; ".join(" <-> ".join(c) for c in found)


def test_no_module_import_circles() -> None:
    found = cycles(module_graph())
    assert not found, f"import circles between modules: {describe(found)}"


def test_no_package_import_circles() -> None:
    found = cycles(package_graph(module_graph()))
    assert not found, f"import circles between packages: {describe(found)}"


def test_the_checker_sees_a_circle() -> None:
    """The checker itself: a circle of three, and a package that imports its own subpackage back."""
    assert cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c"]]
    assert cycles({"a": {"b"}, "b": set()}) == []


FAMILIES = ("local", "docker", "swarm", "kubernetes")


def test_backend_families_do_not_import_each_other() -> None:
    """What two orchestrators share lives in a shared module of runtime/backends, not in one of them."""
    crossing = [
        f"{module} -> {target}"
        for module, targets in module_graph().items()
        for family in FAMILIES
        if module.startswith(f"runtime.backends.{family}.")
        for target in targets
        for other in FAMILIES
        if other != family and target.startswith(f"runtime.backends.{other}")
    ]
    assert not crossing, f"backend families import each other: {crossing}"


def test_the_replica_side_imports_nothing_the_image_leaves_out() -> None:
    """The base image carries runtime/ without backends/ and stoker/ without cli/ (builder/base.py): a replica's
    modules, and what they import in turn, must not need those."""
    graph = module_graph()
    seen: set[str] = set()
    todo = ["runtime.__main__", "runtime.replica.server", "stoker.sdk.shim"]
    while todo:
        module = todo.pop()
        if module not in seen:
            seen.add(module)
            todo.extend(graph.get(module, ()))
    left_out = sorted(m for m in seen if m.startswith(("runtime.backends", "stoker.cli", "gateway", "builder")))
    assert not left_out, f"the replica imports modules that are not in its image: {left_out}"


def test_nothing_imports_a_composition_root_from_below() -> None:
    graph = module_graph()
    for root in COMPOSITION_ROOTS:
        package = root.rpartition(".")[0]
        below = sorted(
            m
            for m, targets in graph.items()
            if root in targets and m.startswith(package + ".") and m.count(".") > root.count(".")
        )
        assert not below, f"{root} assembles {package}; these modules below it import it back: {below}"
