"""README.md stays short, true to the repository, and honest about its figures.

Each check is a small function over text, tested twice: on the real files, and on a
made-up input that must make it fail (so no check can pass vacuously).
"""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
README = REPO / "README.md"
MAX_README_BYTES = 10_240
MAX_TICK_PATH_FILES = 12
TICK_PATH_HEADING = "## Where to start reading"
RESULTS_HEADING = "### Forecast against persistence"

_FENCE = re.compile(r"^```.*?^```", re.MULTILINE | re.DOTALL)
_LINK = re.compile(r"\[[^\]]*\]\(([^)\s]+)(?:\s+\"[^\"]*\")?\)")
_SCHEME = re.compile(r"^[A-Za-z][A-Za-z0-9+.-]*:")
_CODE_SPAN = re.compile(r"`([^`\n]+)`")
_PATH_LIKE = re.compile(r"^[\w.-]+(/[\w.-]+)*/?$")


def section(text: str, heading: str) -> str:
    """The lines after the heading line starting with ``heading``, up to the next heading of its level."""
    level = heading.split(" ", 1)[0]
    lines = text.splitlines()
    for i, line in enumerate(lines):
        if line.startswith(heading):
            end = next(
                (j for j in range(i + 1, len(lines))
                 if re.match(r"#+ ", lines[j]) and len(lines[j].split(" ", 1)[0]) <= len(level)),
                len(lines),
            )
            return "\n".join(lines[i + 1 : end])
    raise AssertionError(f"no heading {heading!r}")


def broken_links(markdown: Path, text: str, root: Path = REPO) -> list[str]:
    """Relative link targets of ``text`` (outside code blocks) that are not files or folders under ``root``."""
    broken = []
    for target in _LINK.findall(_FENCE.sub("", text)):
        if target.startswith("#") or _SCHEME.match(target):
            continue
        path = (markdown.parent / target.split("#", 1)[0].split("?", 1)[0]).resolve()
        if not path.exists() or not path.is_relative_to(root.resolve()):
            broken.append(target)
    return broken


def tick_path(text: str) -> list[str]:
    """Every distinct file path named (as a link or in backticks) in the numbered list of the tick's path."""
    items: list[str] = []
    for line in section(text, TICK_PATH_HEADING).splitlines():
        if re.match(r"\d+\. ", line):
            items.append(line)
        elif items and line.startswith("   "):
            items[-1] += " " + line.strip()
    paths: list[str] = []
    for item in items:
        named = _LINK.findall(item) + [s for s in _CODE_SPAN.findall(item) if "/" in s and _PATH_LIKE.match(s)]
        paths += [p for p in named if p not in paths]
    return paths


def make_targets_named(text: str) -> set[str]:
    """The X of every ``make X`` in code spans and code blocks of ``text``."""
    code = [m.group(0) for m in _FENCE.finditer(text)] + _CODE_SPAN.findall(_FENCE.sub("", text))
    return {m for chunk in code for m in re.findall(r"(?<![\w-])make\s+([A-Za-z][\w-]*)", chunk)}


def makefile_targets(makefile: str) -> set[str]:
    """Targets defined by rules of ``makefile`` (``name [name ...]:``, not ``:=`` assignments)."""
    targets: set[str] = set()
    for m in re.finditer(r"^([A-Za-z][\w.-]*(?:[ \t]+[A-Za-z][\w.-]*)*)[ \t]*:(?!=)", makefile, re.MULTILINE):
        targets.update(m.group(1).split())
    return targets


def last_command(script: str) -> str:
    """The last line of a shell script that is neither blank nor a comment."""
    lines = [ln.strip() for ln in script.splitlines() if ln.strip() and not ln.strip().startswith("#")]
    return lines[-1]


#: README results column -> how the figure is written from a reports/backtest_*.json.
RESULT_COLUMNS = {
    "model": lambda r: r["model"],
    "minutes scored": lambda r: str(r["scored_minutes"]),
    "MAE model (USD)": lambda r: f"{r['model_scores']['mae']:.4f}",
    "MAE persistence (USD)": lambda r: f"{r['persistence_scores']['mae']:.4f}",
    "MAE ratio": lambda r: f"{r['model_scores']['mae_ratio']:.5f}",
    "Diebold–Mariano p": lambda r: f"{r['model_scores']['dm_p_value']:.3f}",
    "90 % coverage": lambda r: f"{100 * r['model_scores']['coverage']:.2f} %",
}


def results_rows(text: str) -> list[dict[str, str]]:
    """The rows of the results table, as dicts keyed by the header's column names."""
    lines = [ln for ln in section(text, RESULTS_HEADING).splitlines() if ln.startswith("|")]
    cells = [[c.strip() for c in ln.strip().strip("|").split("|")] for ln in lines]
    header, rows = cells[0], [r for r in cells[2:]]
    return [dict(zip(header, row, strict=True)) for row in rows]


def result_mismatches(rows: list[dict[str, str]], reports: Path) -> list[str]:
    """Every figure of ``rows`` that differs from its report's JSON, as ``report column: shown != json``."""
    wrong = []
    for row in rows:
        name = row["report"].strip("`")
        report = json.loads((reports / name).read_text(encoding="utf-8"))
        for column, figure in RESULT_COLUMNS.items():
            if row[column] != figure(report):
                wrong.append(f"{name} {column}: {row[column]} != {figure(report)}")
    return wrong


# -- the real README ---------------------------------------------------------------------------


def test_readme_is_at_most_10_kb():
    size = README.stat().st_size
    assert size <= MAX_README_BYTES, f"README.md is {size} bytes; move detail into docs/"


@pytest.mark.parametrize("page", [README, *sorted((REPO / "docs").glob("*.md"))], ids=lambda p: p.name)
def test_every_relative_link_resolves(page):
    assert broken_links(page, page.read_text(encoding="utf-8")) == []


def test_docs_pages_exist_and_readme_links_each():
    text = README.read_text(encoding="utf-8")
    pages = sorted(p.name for p in (REPO / "docs").glob("*.md"))
    assert {"architecture.md", "configuration.md", "deploying.md", "forecasting.md", "local-stack.md",
            "ingestor.md", "api.md"} <= set(pages)
    assert [p for p in pages if f"](docs/{p})" not in text] == []


def test_tick_path_names_at_most_a_dozen_existing_files_in_order():
    paths = tick_path(README.read_text(encoding="utf-8"))
    assert 6 <= len(paths) <= MAX_TICK_PATH_FILES, paths
    assert [p for p in paths if not (REPO / p).is_file()] == []
    assert paths[0].startswith("ingestor/") and paths[-1].startswith("web/")


def test_every_make_target_named_exists():
    named = make_targets_named(README.read_text(encoding="utf-8"))
    assert {"run", "test", "test-unit", "lint"} <= named
    assert named - makefile_targets((REPO / "Makefile").read_text(encoding="utf-8")) == set()


def test_forecast_figures_equal_the_reports():
    rows = results_rows(README.read_text(encoding="utf-8"))
    assert rows, "README quotes no backtest figures"
    assert {r["model"] for r in rows} >= {"linear"}
    assert result_mismatches(rows, REPO / "reports") == []


def test_readme_names_the_ci_command():
    command = last_command((REPO / ".ci" / "run").read_text(encoding="utf-8"))
    assert command == "make test"
    assert command in README.read_text(encoding="utf-8")


# -- each check fails on a made-up input -------------------------------------------------------


def test_broken_links_finds_a_missing_target_and_a_target_outside_the_repository(tmp_path):
    (tmp_path / "repo").mkdir()
    (tmp_path / "outside.md").write_text("x")
    page = tmp_path / "repo" / "page.md"
    page.write_text("x")
    text = "[a](missing.md) [b](../outside.md) [c](page.md#top) [d](https://example.org) [e](#here)"
    assert broken_links(page, text, root=tmp_path / "repo") == ["missing.md", "../outside.md"]


def test_tick_path_counts_every_file_named():
    items = "\n".join(f"{i}. [f{i}.py](f{i}.py): one\n   continued `pkg/g{i}.py`" for i in range(1, 8))
    text = f"{TICK_PATH_HEADING}\n\n{items}\n\n## Next\n\n1. [z.py](z.py)\n"
    paths = tick_path(text)
    assert len(paths) == 14 > MAX_TICK_PATH_FILES
    assert paths[:2] == ["f1.py", "pkg/g1.py"] and "z.py" not in paths


def test_make_targets_named_finds_code_only_and_makefile_targets_skip_assignments():
    text = "To make it work run `make run ARGS=x`.\n\n```sh\nmake nothing\n```\n"
    assert make_targets_named(text) == {"run", "nothing"}
    targets = makefile_targets("X := 1\n.PHONY: a\n$(S): b\nrun test: $(S)\n\tcmd\nlint:\n")
    assert targets == {"run", "test", "lint"}
    assert make_targets_named(text) - targets == {"nothing"}


def test_result_mismatches_reports_a_figure_that_differs(tmp_path):
    report = {"model": "linear", "scored_minutes": 10,
              "model_scores": {"mae": 1.0, "mae_ratio": 0.99, "dm_p_value": 0.5, "coverage": 0.9},
              "persistence_scores": {"mae": 1.01}}
    (tmp_path / "backtest_x.json").write_text(json.dumps(report))
    text = (f"{RESULTS_HEADING}\n\n| report | " + " | ".join(RESULT_COLUMNS) + " |\n"
            + "| --- " * (len(RESULT_COLUMNS) + 1) + "|\n"
            + "| `backtest_x.json` | linear | 10 | 1.0000 | 1.0100 | 0.99000 | 0.500 | 91.00 % |\n")
    assert result_mismatches(results_rows(text), tmp_path) == ["backtest_x.json 90 % coverage: 91.00 % != 90.00 %"]


def test_last_command_skips_comments_and_blank_lines():
    assert last_command("#!/bin/sh\nmake lint\nmake test\n# done\n\n") == "make test"
