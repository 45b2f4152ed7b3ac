"""The package's layering, read from the imports of ``src/harmono``: no circle, no edge upward.

Every import counts, at module level or inside a function (a deferred import is still a dependency).
``ALLOWED`` is the table of ``docs/architecture.md``: what each area may import besides itself.
"""

import ast
import re
from pathlib import Path

ROOT = Path(__file__).parents[1]
PACKAGE = ROOT / "src" / "harmono"

ALLOWED: dict[str, set[str]] = {
    "core": set(),
    "harmonic": {"core"},
    "mono": {"core"},
    "data": {"core"},
    "encoders": {"core"},
    "training": {"core"},
    "models": {"core", "harmonic", "encoders"},
    "features": {"core", "data", "encoders"},
    "sae": {"core", "mono", "training", "features"},
    "analysis": {"core", "harmonic", "mono", "data", "models", "features", "sae"},
    "experiments": {
        "core",
        "harmonic",
        "mono",
        "data",
        "encoders",
        "training",
        "models",
        "features",
        "sae",
        "analysis",
    },  # fmt: skip
    "report": {
        "core",
        "harmonic",
        "mono",
        "data",
        "models",
        "features",
        "sae",
        "training",
        "analysis",
        "experiments",
    },  # fmt: skip
    "cli": {
        "core",
        "harmonic",
        "mono",
        "data",
        "encoders",
        "training",
        "models",
        "features",
        "sae",
        "analysis",
        "experiments",
        "report",
        "recipes",
    },  # fmt: skip
    "recipes": {"core"},
    "harmono": {"core", "harmonic", "mono"},
}
"""Area (a subpackage; ``harmono`` is the package's own ``__init__``) -> the areas it may import."""


def _modules() -> dict[str, tuple[Path, bool]]:
    modules = {}
    for path in PACKAGE.rglob("*.py"):
        parts = list(path.relative_to(PACKAGE.parent).with_suffix("").parts)
        is_package = parts[-1] == "__init__"
        modules[".".join(parts[:-1] if is_package else parts)] = (path, is_package)
    return modules


def import_graph() -> dict[str, set[str]]:
    """Module -> the harmono modules it imports (a ``from pkg import name`` of a submodule is that module)."""
    modules = _modules()
    graph: dict[str, set[str]] = {}
    for name, (path, is_package) in modules.items():
        targets: set[str] = set()
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            if isinstance(node, ast.Import):
                targets |= {alias.name for alias in node.names}
            elif isinstance(node, ast.ImportFrom):
                if node.level:
                    base = name.split(".")[: len(name.split(".")) + int(is_package) - node.level]
                    module = ".".join(base + ([node.module] if node.module else []))
                else:
                    module = node.module or ""
                for alias in node.names:
                    child = f"{module}.{alias.name}"
                    targets.add(child if child in modules else module)
        graph[name] = {t for t in targets if t in modules and t != name}
    return graph


def circles(graph: dict[str, set[str]]) -> list[list[str]]:
    """The strongly connected components of more than one module (Tarjan's algorithm)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []

    def visit(node: str) -> None:
        index[node] = low[node] = len(index)
        stack.append(node)
        on_stack.add(node)
        for target in sorted(graph[node]):
            if target not in index:
                visit(target)
                low[node] = min(low[node], low[target])
            elif target in on_stack:
                low[node] = min(low[node], index[target])
        if low[node] == index[node]:
            component = []
            while True:
                member = stack.pop()
                on_stack.discard(member)
                component.append(member)
                if member == node:
                    break
            if len(component) > 1:
                found.append(sorted(component))

    for node in sorted(graph):
        if node not in index:
            visit(node)
    return found


def area(module: str) -> str:
    parts = module.split(".")
    return parts[1] if len(parts) > 1 else "harmono"


def test_the_circle_finder_finds_a_circle():
    assert circles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c"]]
    assert circles({"a": {"b"}, "b": set()}) == []


def test_the_graph_sees_deferred_and_relative_imports():
    graph = import_graph()
    assert "harmono.harmonic.kernel" in graph["harmono.harmonic.functional"]
    # the CLI imports most commands' libraries inside functions
    assert any(t.startswith("harmono.experiments.") for t in graph["harmono.cli.demo"])


def test_no_import_circle():
    assert circles(import_graph()) == []


def test_no_area_imports_upward():
    upward = [
        f"{module} -> {target}"
        for module, targets in import_graph().items()
        for target in targets
        if area(target) != area(module) and area(target) not in ALLOWED[area(module)]
    ]
    assert upward == []


def test_every_area_is_in_the_table():
    assert {area(module) for module in import_graph()} == set(ALLOWED)


def test_top_level_modules_are_public_api_or_packages():
    loose = sorted(p.name for p in PACKAGE.glob("*.py") if p.name != "__init__.py")
    assert loose == []
    assert [str(p.relative_to(PACKAGE)) for p in PACKAGE.rglob("*_cli.py")] == []


def test_no_source_file_over_450_lines():
    lengths = {str(p.relative_to(PACKAGE)): len(p.read_text().splitlines()) for p in PACKAGE.rglob("*.py")}
    assert {name: n for name, n in lengths.items() if n > 450} == {}


def test_the_architecture_doc_states_the_same_table():
    text = (ROOT / "docs" / "architecture.md").read_text()
    rows = dict(re.findall(r"^\| `(\w+)/?` \|[^|]*\| ([^|]*) \|$", text, flags=re.M))
    stated = {name: set(re.findall(r"`(\w+)`", imports)) for name, imports in rows.items()}
    assert stated == ALLOWED
