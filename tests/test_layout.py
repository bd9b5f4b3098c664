"""The package's shape: no import cycles (deferred imports included) and no oversized module."""

import ast
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1] / "llmner"
LONG_TABLES = {"llmner.data.crime.generator"}  # the crime generator's word tables
MAX_LINES = 450


def modules() -> dict[str, Path]:
    out = {}
    for path in ROOT.rglob("*.py"):
        name = ".".join(path.relative_to(ROOT.parent).with_suffix("").parts)
        out[name.removesuffix(".__init__")] = path
    return out


def imports(name: str, path: Path, known: dict[str, Path]) -> set[str]:
    """The llmner modules ``name`` imports anywhere in its body (``from pkg import mod`` counts as mod)."""
    package = name if path.name == "__init__.py" else name.rsplit(".", 1)[0]
    found = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            found |= {a.name for a in node.names}
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                parts = package.split(".")[: len(package.split(".")) - node.level + 1]
                base = ".".join(parts + ([base] if base else []))
            found |= {f"{base}.{a.name}" if f"{base}.{a.name}" in known else base for a in node.names}
    return {m for m in found if m in known and m != name}


def test_no_module_imports_a_module_that_imports_it():
    known = modules()
    graph = {m: imports(m, p, known) for m, p in known.items()}
    state: dict[str, int] = {}  # 1: on the current path, 2: done

    def visit(m: str, path: list[str]) -> None:
        state[m] = 1
        for t in sorted(graph[m]):
            assert state.get(t) != 1, "import cycle: " + " -> ".join(path[path.index(t):] + [t]) if t in path else t
            if t not in state:
                visit(t, path + [t])
        state[m] = 2

    for m in sorted(graph):
        if m not in state:
            visit(m, [m])


def test_the_cycle_check_finds_a_cycle(tmp_path, monkeypatch):
    """The oracle for the test above: two modules that import each other are reported."""
    pkg = tmp_path / "llmner"
    pkg.mkdir()
    (pkg / "__init__.py").write_text("")
    (pkg / "a.py").write_text("def f():\n    from llmner import b\n")
    (pkg / "b.py").write_text("from llmner.a import f\n")
    monkeypatch.setattr(sys.modules[__name__], "ROOT", pkg)
    try:
        test_no_module_imports_a_module_that_imports_it()
    except AssertionError as e:
        assert "llmner.a -> llmner.b -> llmner.a" in str(e)
    else:
        raise AssertionError("the cycle was not found")


def test_no_module_is_over_450_lines():
    long = {m: n for m, p in modules().items() if (n := len(p.read_text().splitlines())) > MAX_LINES}
    assert set(long) <= LONG_TABLES, long
