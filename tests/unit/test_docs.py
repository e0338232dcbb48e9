"""docs/configuration.md is generated from the settings table, and is current."""

from __future__ import annotations

import importlib.util
import re
from pathlib import Path

from shared.settings import SETTINGS, Setting

REPO = Path(__file__).resolve().parents[2]
PAGE = REPO / "docs" / "configuration.md"


def _generator():
    spec = importlib.util.spec_from_file_location("gen_config_doc", REPO / "scripts" / "gen_config_doc.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _rows(text: str) -> dict[str, list[str]]:
    """Setting name -> the other cells of its row in the page's table."""
    return {
        m.group(1): [c.strip() for c in m.group(2).split(" | ")]
        for m in re.finditer(r"^\| `([^`]+)` \| (.+) \|$", text, re.MULTILINE)
    }


def test_configuration_page_is_current():
    gen = _generator()
    assert PAGE.read_text(encoding="utf-8") == gen.current_text(), (
        f"docs/configuration.md is stale: run {gen.COMMAND}"
    )
    assert gen.main(["--check"]) == 0


def test_configuration_page_lists_exactly_the_settings_with_their_defaults_and_secrets():
    rows = _rows(PAGE.read_text(encoding="utf-8"))
    assert list(rows) == list(SETTINGS)
    for name, setting in SETTINGS.items():
        default, _meaning, used_by, secret = rows[name]
        if setting.default is None:
            assert default == "—", name
        elif setting.default == "":
            assert default == "empty", name
        else:
            assert default == f"`{setting.default}`", name
        assert used_by == ", ".join(setting.used_by), name
        assert secret == ("yes" if setting.secret else ""), name


def test_check_fails_on_a_stale_page_and_passes_once_rewritten(tmp_path):
    gen = _generator()
    page = tmp_path / "configuration.md"
    page.write_text(gen.current_text().replace("| `TICKS_HUB_NAME` | `ticks`", "| `TICKS_HUB_NAME` | `old`"))
    assert gen.main(["--check", "--output", str(page)]) == 1
    assert gen.main(["--check", "--output", str(tmp_path / "missing.md")]) == 1
    assert gen.main(["--output", str(page)]) == 0
    assert gen.main(["--check", "--output", str(page)]) == 0


def test_render_follows_the_table_including_a_new_workload():
    gen = _generator()
    table = dict(SETTINGS) | {"NEW_ONE": Setting("7", "read by a <new> workload | only", ("newcomer",), True)}
    text = gen.render(table)
    assert text != gen.render(SETTINGS)
    assert "- **newcomer** (1): `NEW_ONE`" in text
    assert _rows(text)["NEW_ONE"] == ["`7`", "read by a &lt;new&gt; workload \\| only", "newcomer", "yes"]
