"""The package map holds: dependencies point one way and no module imports itself in a circle.

Reads the imports of every shipped module with `ast` (nothing is executed), builds the module
graph and checks the rules DESIGN.md states: `app` is imported by nobody below it, `policies`
does not import `sim`, the foundation (`common`) imports no project package, and no module
imports itself in a circle at run time (imports under `if TYPE_CHECKING:` obey the package
map but cannot form a cycle, since they never run).
"""

from __future__ import annotations

import ast
import pathlib

ROOT = pathlib.Path(__file__).resolve().parents[1]
PACKAGES = ("common", "recordings", "lrm", "policies", "sim", "robot_drivers", "app")

# package -> project packages it must never import
FORBIDDEN = {
    "common": {"recordings", "lrm", "policies", "sim", "robot_drivers", "app"},
    "recordings": {"lrm", "policies", "sim", "robot_drivers", "app"},
    "lrm": {"policies", "sim", "robot_drivers", "app"},
    "policies": {"lrm", "sim", "robot_drivers", "app"},
    "sim": {"lrm", "policies", "robot_drivers", "app"},
    "robot_drivers": {"lrm", "policies", "sim", "app"},
}


def _module_name(path: pathlib.Path) -> str:
    parts = list(path.relative_to(ROOT).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts = parts[:-1]
    return ".".join(parts)


def _modules() -> dict[str, pathlib.Path]:
    found = {}
    for package in PACKAGES:
        for path in sorted((ROOT / package).rglob("*.py")):
            found[_module_name(path)] = path
    return found


def _type_checking_blocks(tree: ast.AST) -> set[int]:
    """ids of the nodes inside `if TYPE_CHECKING:` (annotations only: never run, so no runtime cycle)."""
    inside: set[int] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.If) and "TYPE_CHECKING" in ast.unparse(node.test):
            for child in node.body:
                inside.update(id(n) for n in ast.walk(child))
    return inside


def _imports(name: str, path: pathlib.Path, known: set[str], *, runtime_only: bool = False) -> set[str]:
    """Project modules `name` imports (at any depth of the file, local imports included)."""
    tree = ast.parse(path.read_text(), filename=str(path))
    is_package = path.name == "__init__.py"
    skip = _type_checking_blocks(tree) if runtime_only else set()
    targets: set[str] = set()
    for node in ast.walk(tree):
        if id(node) in skip:
            continue
        if isinstance(node, ast.Import):
            targets.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = name.split(".")
                base = base[: len(base) - node.level + (1 if is_package else 0)]
                module = ".".join(base + ([node.module] if node.module else []))
            else:
                module = node.module or ""
            targets.add(module)
            targets.update(f"{module}.{alias.name}" for alias in node.names)
    resolved = set()
    for target in targets:
        while target and target not in known:
            target = target.rpartition(".")[0]
        if target and target != name:
            resolved.add(target)
    return resolved


def _graph(*, runtime_only: bool = False) -> dict[str, set[str]]:
    modules = _modules()
    known = set(modules)
    return {name: _imports(name, path, known, runtime_only=runtime_only) for name, path in modules.items()}


def test_no_package_imports_upward():
    graph = _graph()
    wrong = []
    for module, deps in graph.items():
        package = module.split(".")[0]
        for dep in deps:
            if dep.split(".")[0] in FORBIDDEN.get(package, set()):
                wrong.append(f"{module} -> {dep}")
    assert not wrong, "imports against the package map:\n" + "\n".join(sorted(wrong))


def test_no_import_cycle():
    graph = _graph(runtime_only=True)
    # Tarjan's strongly connected components: any component of more than one module is a cycle.
    index, low, stack, on_stack, cycles = {}, {}, [], set(), []

    def visit(node: str) -> None:
        index[node] = low[node] = len(index)
        stack.append(node)
        on_stack.add(node)
        for dep in graph.get(node, ()):
            if dep not in index:
                visit(dep)
                low[node] = min(low[node], low[dep])
            elif dep in on_stack:
                low[node] = min(low[node], index[dep])
        if low[node] == index[node]:
            component = []
            while True:
                top = stack.pop()
                on_stack.discard(top)
                component.append(top)
                if top == node:
                    break
            if len(component) > 1:
                cycles.append(sorted(component))

    for node in sorted(graph):
        if node not in index:
            visit(node)
    assert not cycles, "import cycles:\n" + "\n".join(" <-> ".join(c) for c in cycles)
