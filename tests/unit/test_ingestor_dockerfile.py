"""Static checks of ingestor/Dockerfile and .dockerignore (no Docker engine runs here).

Checked: python:3.11-slim base; every COPY source exists in the build context (the
repository root) and is not excluded by .dockerignore; only shared/ and ingestor/ are
copied; the pinned requirements are installed; USER is non-root; CMD runs
``python -m ingestor live``; EXPOSE and the HEALTHCHECK use INGESTOR_HEALTH_PORT's
default; and the code copied into the image imports nothing beyond the standard library,
shared/, ingestor/ and the pinned packages.
"""

from __future__ import annotations

import ast
import fnmatch
import json
import shlex
import sys
from pathlib import Path

from shared.settings import SETTINGS

REPO = Path(__file__).resolve().parents[2]
DOCKERFILE = REPO / "ingestor" / "Dockerfile"


def instructions() -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments) pairs, continuation lines joined, comments dropped."""
    out: list[tuple[str, str]] = []
    pending = ""
    for raw in DOCKERFILE.read_text().splitlines():
        line = raw.strip()
        if not pending and (not line or line.startswith("#")):
            continue
        if line.endswith("\\"):
            pending += line[:-1] + " "
            continue
        line = pending + line
        pending = ""
        word, _, rest = line.partition(" ")
        out.append((word.upper(), rest.strip()))
    return out


def dockerignore_excludes(rel: str) -> bool:
    """Whether .dockerignore keeps ``rel`` (a path relative to the repo root) out of the context."""
    excluded = False
    for raw in (REPO / ".dockerignore").read_text().splitlines():
        pattern = raw.strip()
        if not pattern or pattern.startswith("#"):
            continue
        negate = pattern.startswith("!")
        pattern = pattern.lstrip("!").rstrip("/")
        parts = rel.split("/")
        prefixes = ["/".join(parts[: i + 1]) for i in range(len(parts))]
        if any(
            fnmatch.fnmatch(p, pattern) or fnmatch.fnmatch(p, pattern.replace("**/", "")) for p in prefixes
        ):
            excluded = not negate
    return excluded


def test_base_image_user_cmd_and_port():
    ins = instructions()
    froms = [a for i, a in ins if i == "FROM"]
    assert froms == ["python:3.11-slim"]
    users = [a for i, a in ins if i == "USER"]
    assert users, "no USER instruction"
    user = users[-1].split(":")[0]
    assert user not in ("root", "0")
    assert user.isdigit() and int(user) >= 1000 or user.isidentifier()
    cmd = [a for i, a in ins if i == "CMD"][-1]
    assert json.loads(cmd) == ["python", "-m", "ingestor", "live"]
    port = SETTINGS["INGESTOR_HEALTH_PORT"].default
    assert [a for i, a in ins if i == "EXPOSE"] == [port]
    health = [a for i, a in ins if i == "HEALTHCHECK"]
    assert (
        len(health) == 1
        and "/healthz" in health[0]
        and "INGESTOR_HEALTH_PORT" in health[0]
        and port in health[0]
    )
    env = " ".join(a for i, a in ins if i == "ENV")
    assert f"INGESTOR_HEALTH_PORT={port}" in env
    # the USER line comes after every RUN (installs need root) and before CMD
    order = [i for i, _ in ins]
    assert max(k for k, i in enumerate(order) if i == "RUN") < order.index("USER") < order.index("CMD")


def test_copy_sources_exist_and_only_shared_and_ingestor_are_copied():
    copies = [shlex.split(a) for i, a in instructions() if i in ("COPY", "ADD")]
    assert copies and all(i != "ADD" for i, _ in instructions())
    sources = []
    for args in copies:
        args = [a for a in args if not a.startswith("--")]
        sources += args[:-1]
    for src in sources:
        path = REPO / src
        assert path.exists(), f"COPY source {src} does not exist in the build context"
        assert not dockerignore_excludes(src.rstrip("/")), f"COPY source {src} is excluded by .dockerignore"
        assert src.split("/")[0] in ("shared", "ingestor")
    assert {s.rstrip("/") for s in sources} >= {"shared", "ingestor", "ingestor/requirements.txt"}
    runs = " ".join(a for i, a in instructions() if i == "RUN")
    assert "pip install" in runs and "ingestor/requirements.txt" in runs


def test_dockerignore_keeps_the_context_small():
    for rel in (
        "tests/integration/test_kafka.py",
        "node_modules",
        ".venv",
        "infra/__main__.py",
        "functions",
        "README.md",
    ):
        assert dockerignore_excludes(rel), rel
    for rel in ("shared/contracts/events.py", "ingestor/__main__.py", "ingestor/requirements.txt"):
        assert not dockerignore_excludes(rel), rel
    assert dockerignore_excludes("shared/__pycache__/events.cpython-311.pyc")


def _imports(path: Path) -> set[str]:
    """Dotted module names imported by ``path``, except optional ones (inside ``try: ... except ImportError``)."""
    tree = ast.parse(path.read_text())
    optional: set[int] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Try) and any(
            isinstance(h.type, ast.Name) and h.type.id in ("ImportError", "ModuleNotFoundError")
            for h in node.handlers
        ):
            optional |= {id(n) for stmt in node.body for n in ast.walk(stmt)}
    names: set[str] = set()
    for node in ast.walk(tree):
        if id(node) in optional:
            continue
        if isinstance(node, ast.Import):
            names |= {a.name for a in node.names}
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names.add(node.module)
            names |= {f"{node.module}.{a.name}" for a in node.names}
    return names


def _module_file(name: str) -> Path | None:
    parts = name.split(".")
    for candidate in (REPO.joinpath(*parts).with_suffix(".py"), REPO.joinpath(*parts, "__init__.py")):
        if candidate.is_file():
            return candidate
    return None


def test_image_code_needs_only_the_pinned_packages():
    """Everything reachable from ingestor/ (following imports into shared/) is stdlib, ours, or pinned."""
    pinned = {"websockets", "azure", "aiohttp", "confluent_kafka", "msgspec"}
    requirements = (REPO / "ingestor" / "requirements.txt").read_text()
    for dist in ("websockets", "azure-eventhub", "azure-identity", "aiohttp", "confluent-kafka", "msgspec"):
        assert f"{dist}==" in requirements
    todo = list((REPO / "ingestor").rglob("*.py"))
    seen: set[Path] = set()
    third_party: set[str] = set()
    while todo:
        path = todo.pop()
        if path in seen:
            continue
        seen.add(path)
        for name in _imports(path):
            top = name.split(".")[0]
            if top in ("shared", "ingestor"):
                found = _module_file(name)
                if found is not None:
                    todo.append(found)
            elif top != "__future__" and top not in sys.stdlib_module_names:
                third_party.add(top)
    assert third_party <= pinned, third_party - pinned
    assert not any(
        p.is_relative_to(REPO / "local_stack") or p.is_relative_to(REPO / "functions") for p in seen
    )
    assert REPO / "shared" / "contracts" / "events.py" in seen  # the walk does follow shared/
