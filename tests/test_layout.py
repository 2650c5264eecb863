"""The package's shape, checked: small modules, no import cycle, no reach into another module's privates,
and a library that never configures logging. Pure source reading, no server."""

from __future__ import annotations

import ast
import re
from pathlib import Path
from typing import Dict, List, Set

import pytest

PACKAGE = Path(__file__).resolve().parent.parent / "redisresults"
MODULES = sorted(p for p in PACKAGE.rglob("*.py"))


def module_name(path: Path) -> str:
    parts = list(path.relative_to(PACKAGE.parent).with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def imports_of(path: Path) -> Set[str]:
    name = module_name(path)
    package = name if path.name == "__init__.py" else name.rsplit(".", 1)[0]
    found: Set[str] = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom) and node.level:
            base = package.split(".")[: len(package.split(".")) - (node.level - 1)]
            target = ".".join(base + ([node.module] if node.module else []))
            found.update(f"{target}.{a.name}" for a in node.names) if node.module is None else found.add(target)
        elif isinstance(node, ast.ImportFrom) and node.module and node.module.startswith("redisresults"):
            found.add(node.module)
        elif isinstance(node, ast.Import):
            found.update(a.name for a in node.names if a.name.startswith("redisresults"))
    return found


def graph() -> Dict[str, Set[str]]:
    names = {module_name(p) for p in MODULES}

    def known(target: str) -> str:
        while target not in names and "." in target:
            target = target.rsplit(".", 1)[0]
        return target

    return {
        module_name(p): {known(t) for t in imports_of(p) if known(t) in names and known(t) != module_name(p)}
        for p in MODULES
    }


@pytest.mark.parametrize("path", MODULES, ids=lambda p: str(p.relative_to(PACKAGE)))
def test_modules_stay_small(path: Path) -> None:
    assert len(path.read_text().splitlines()) <= 400, f"{path.name} is one concept of at most ~400 lines"


def test_no_import_cycle() -> None:
    edges = graph()
    cycles: List[List[str]] = []
    state: Dict[str, int] = {}
    stack: List[str] = []

    def visit(node: str) -> None:
        state[node] = 1
        stack.append(node)
        for nxt in sorted(edges[node]):
            if state.get(nxt) == 1:
                cycles.append(stack[stack.index(nxt) :] + [nxt])
            elif nxt not in state:
                visit(nxt)
        stack.pop()
        state[node] = 2

    for node in sorted(edges):
        if node not in state:
            visit(node)
    assert cycles == []


PRIVATE_ATTRIBUTE = re.compile(r"\b(?!self\b|cls\b)([a-z_][a-z0-9_]*)\._([a-z][a-z0-9_]*)\b")


@pytest.mark.parametrize("path", MODULES, ids=lambda p: str(p.relative_to(PACKAGE)))
def test_no_reach_into_other_objects_privates(path: Path) -> None:
    """``obj._field`` only on ``self``/``cls``; ``_module.name`` (a private module's public name) is fine."""
    modules = {p.stem for p in MODULES} | {"_meta"}
    offending = []
    for number, line in enumerate(path.read_text().splitlines(), 1):
        code = line.split("#", 1)[0]
        if code.lstrip().startswith(("from ", "import ")):
            continue  # a module path, not an attribute
        for match in PRIVATE_ATTRIBUTE.finditer(code):
            owner = match.group(1)
            if owner.startswith("_") and owner in modules:
                continue
            offending.append((number, line.strip()))
    allowed = ALLOWED.get(path.name, set())
    assert [o for o in offending if o[1] not in allowed] == []


# redis-py internals live in _subscriber.py alone (with tests/test_subscriber.py watching them).
ALLOWED: Dict[str, Set[str]] = {}


def test_library_never_configures_logging() -> None:
    for path in MODULES:
        if "cli" in path.parts or path.name == "__main__.py":
            continue  # programs (the CLI, the bench's helper processes) configure their own process only
        text = path.read_text()
        assert "structlog.configure(" not in text and "structlog.get_logger(" not in text, path
        assert "logging.basicConfig(" not in text and ".addHandler(logging.StreamHandler" not in text, path
        if "bench" not in path.parts:  # the bench prints its table when run as a program
            assert not re.search(r"^\s*print\(", text, re.M), path
