"""The package's shape: no import cycles between modules, no module reaching into another's privates."""

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1] / "specdec"


def _module_name(path: Path) -> str:
    parts = path.relative_to(ROOT.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _imports(path: Path) -> list[tuple[str, list[str]]]:
    """(imported module, names taken from it) for every import in ``path``, relative ones resolved."""
    package = _module_name(path).split(".")
    if path.name != "__init__.py":
        package = package[:-1]
    out = []
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            out += [(a.name, []) for a in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = package[: len(package) - node.level + 1] if node.level else []
            module = ".".join([*base, *(node.module.split(".") if node.module else [])])
            out.append((module, [a.name for a in node.names]))
    return out


def _graph() -> dict[str, set[str]]:
    modules = {_module_name(p): p for p in ROOT.rglob("*.py") if "data" not in p.parts}
    graph = {}
    for name, path in modules.items():
        deps = set()
        for module, names in _imports(path):
            if module in modules:
                deps.add(module)
            deps |= {f"{module}.{n}" for n in names if f"{module}.{n}" in modules}
        graph[name] = deps - {name}
    return graph


def test_no_import_cycles():
    graph, state, cycles = _graph(), {}, []

    def visit(node, stack):
        state[node] = "open"
        for dep in graph[node]:
            if state.get(dep) == "open":
                cycles.append(stack[stack.index(dep):] + [dep])
            elif dep not in state:
                visit(dep, [*stack, dep])
        state[node] = "done"

    for node in graph:
        if node not in state:
            visit(node, [node])
    # A package's __init__ re-exporting its own modules is not a cycle of the design.
    cycles = [c for c in cycles if not any(a.startswith(b + ".") or b.startswith(a + ".") for a, b in zip(c, c[1:]))]
    assert not cycles, cycles


def test_no_module_imports_another_modules_private_names():
    offenders = []
    for path in ROOT.rglob("*.py"):
        for module, names in _imports(path):
            if module.startswith("specdec") and module != _module_name(path):
                offenders += [f"{_module_name(path)} imports {module}.{n}" for n in names
                              if n.startswith("_") and not n.endswith("__")]  # dunders are public
    assert not offenders, offenders


def test_the_graph_sees_real_edges():
    graph = _graph()
    assert "specdec.engine.verify" in graph["specdec.engine.loop"]
    assert "specdec.engine.stats" in graph["specdec.auto.autotune"]
