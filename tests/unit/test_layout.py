"""The layout rules that import-linter cannot express, checked on the source files.

* No module over 500 lines in ``shared/``, ``functions/``, ``ingestor/``, ``local_stack/``, ``tickcast/``.
* Nothing under ``shared/`` imports ``azure.functions`` (import-linter forbids internal packages only,
  not a subpackage of an external one; pyproject's contract "shared is driven, never a driver"
  points here). The function app's adapters live in ``functions/``.
* Every package under ``shared/`` says in its module docstring what it is for.

Each rule is a small function; the ``*_catches_*`` tests show it fails on a bad module.
"""

from __future__ import annotations

import ast
from collections.abc import Iterator
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
PACKAGES = ("shared", "functions", "ingestor", "local_stack", "tickcast")
MAX_LINES = 500


def python_files(*roots: Path) -> Iterator[Path]:
    """Every ``*.py`` file under ``roots`` (bytecode caches excluded), sorted."""
    for root in roots:
        yield from sorted(p for p in root.rglob("*.py") if "__pycache__" not in p.parts)


def line_count(path: Path) -> int:
    """Lines of a text file, as ``wc -l`` counts them for a file that ends in a newline."""
    return len(path.read_text(encoding="utf-8").splitlines())


def oversized(paths: list[Path], limit: int = MAX_LINES) -> dict[str, int]:
    """``{path: lines}`` of the files longer than ``limit`` lines."""
    return {str(p): n for p in paths if (n := line_count(p)) > limit}


def imported_modules(source: str) -> set[str]:
    """Dotted names of every module ``source`` imports, anywhere in it (also inside functions and
    ``if TYPE_CHECKING:``); ``from a import b`` yields both ``a`` and ``a.b``, since ``b`` may be a module."""
    names: set[str] = set()
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            names.add(node.module)
            names.update(f"{node.module}.{alias.name}" for alias in node.names)
    return names


def imports_azure_functions(source: str) -> bool:
    """True when ``source`` imports ``azure.functions`` or any of its submodules."""
    return any(name == "azure.functions" or name.startswith("azure.functions.")
               for name in imported_modules(source))


# ----------------------------------------------------------------------------- module size
def test_no_module_is_over_500_lines():
    paths = list(python_files(*(REPO / p for p in PACKAGES)))
    assert len(paths) > 50  # the packages were found
    too_long = {str(Path(p).relative_to(REPO)): n for p, n in oversized(paths).items()}
    assert too_long == {}, f"modules over {MAX_LINES} lines: {too_long}"


def test_the_size_rule_catches_a_501_line_module(tmp_path):
    at_limit, over = tmp_path / "at_limit.py", tmp_path / "over.py"
    at_limit.write_text("x = 1\n" * 500)
    over.write_text("x = 1\n" * 501)
    assert oversized([at_limit, over]) == {str(over): 501}


# ----------------------------------------------------------------------------- shared stays host-free
def test_nothing_under_shared_imports_azure_functions():
    offenders = [str(p.relative_to(REPO)) for p in python_files(REPO / "shared")
                 if imports_azure_functions(p.read_text(encoding="utf-8"))]
    assert offenders == []


@pytest.mark.parametrize(("source", "found"), [
    ("import azure.functions as func", True),
    ("from azure import functions", True),
    ("from azure.functions.decorators.core import BindingDirection", True),
    ("def f():\n    import azure.functions\n", True),
    ("if TYPE_CHECKING:\n    from azure.functions import HttpRequest\n", True),
    ("import azure.storage.blob\nfrom azure.core.exceptions import ResourceNotFoundError", False),
    ("from . import functions", False),
])
def test_the_import_rule_catches_every_spelling(source, found):
    assert imports_azure_functions(source) is found


# ----------------------------------------------------------------------------- package docstrings
def test_every_shared_package_says_what_it_is_for():
    inits = [p for p in python_files(REPO / "shared") if p.name == "__init__.py"]
    layers = {p.parent.name for p in inits if p.parent.parent == REPO / "shared"}
    assert {"contracts", "stream", "forecast", "lifecycle", "storage", "serving", "offline"} <= layers
    missing = [str(p.parent.relative_to(REPO)) for p in inits
               if not (ast.get_docstring(ast.parse(p.read_text(encoding="utf-8"))) or "").strip()]
    assert missing == [], f"packages without a module docstring: {missing}"
