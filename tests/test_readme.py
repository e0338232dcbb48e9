"""README.md stays true to the code: its configuration table is the settings module's."""

from __future__ import annotations

import re
from pathlib import Path

from shared.settings import SETTINGS

README = Path(__file__).resolve().parents[1] / "README.md"


def _configuration_rows() -> dict[str, str]:
    text = README.read_text(encoding="utf-8")
    table = text[text.index("## Configuration") : text.index("## Layout")]
    return {m.group(1): m.group(2) for m in re.finditer(r"^\| `([^`]+)` \| ([^|]+) \|", table, re.MULTILINE)}


def test_configuration_table_lists_exactly_the_settings_with_their_defaults():
    rows = _configuration_rows()
    assert set(rows) == set(SETTINGS)
    for name, setting in SETTINGS.items():
        shown = rows[name].strip()
        if setting.default is None:
            assert shown == "—", name
        elif setting.default == "":
            assert shown == "empty", name
        else:
            assert shown == f"`{setting.default}`", name


def test_readme_names_the_two_commands_and_the_ci_entry_point():
    text = README.read_text(encoding="utf-8")
    assert "make run" in text and "make test" in text
    ci = (README.parent / ".ci" / "run").read_text(encoding="utf-8")
    assert "make test" in ci
