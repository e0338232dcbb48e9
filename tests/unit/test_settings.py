"""The one settings reader: typed parsing, clear errors, the local stack's own settings kept out of Azure."""

from __future__ import annotations

import ast
import sys
from pathlib import Path

import pytest

from shared.settings import (
    FUNCTIONS,
    INGESTOR,
    LOCAL,
    SETTINGS,
    LocalSettings,
    Settings,
    SettingsError,
    SettingsReader,
    settings_for,
)

ROOT = Path(__file__).resolve().parents[2]
if str(ROOT / "infra") not in sys.path:
    sys.path.insert(0, str(ROOT / "infra"))

from tickcast_infra import settings_contract as contract  # noqa: E402


def test_every_setting_says_who_reads_it():
    for name, setting in SETTINGS.items():
        assert setting.used_by and set(setting.used_by) <= {FUNCTIONS, INGESTOR, LOCAL}, name
        assert setting.meaning, name


def test_local_stack_settings_and_their_defaults():
    assert {n: s.default for n, s in settings_for(LOCAL).items()} == {
        "REPLAY_SPEED": "60",
        "RETRAIN_EVERY_S": "15",
        "DASHBOARD_PORT": "7071",
        "EXIT_WHEN_DONE": "0",
    }
    assert all(s.used_by == (LOCAL,) for s in settings_for(LOCAL).values())
    assert LocalSettings.from_env({}) == LocalSettings(60.0, 15.0, 7071, False)
    env = {"REPLAY_SPEED": "0", "RETRAIN_EVERY_S": "2.5", "DASHBOARD_PORT": "0", "EXIT_WHEN_DONE": "1"}
    assert LocalSettings.from_env(env) == LocalSettings(0.0, 2.5, 0, True)


def test_no_local_only_setting_is_provided_in_azure():
    assert contract.LOCAL == LOCAL
    contract.check_azure_only(set(settings_for(LOCAL)))
    with pytest.raises(ValueError, match="TICKS_HUB_NAME"):
        contract.check_azure_only({"TICKS_HUB_NAME"})


@pytest.mark.parametrize(
    ("env", "message"),
    [
        ({"RETRAIN_EVERY_S": "0"}, "RETRAIN_EVERY_S='0' must be a finite number > 0"),
        ({"RETRAIN_EVERY_S": "soon"}, "RETRAIN_EVERY_S='soon' is not a number"),
        ({"REPLAY_SPEED": "inf"}, "REPLAY_SPEED='inf' must be a finite number >= 0"),
        ({"REPLAY_SPEED": "-1"}, "REPLAY_SPEED='-1' must be a finite number >= 0"),
        ({"DASHBOARD_PORT": "70000"}, "DASHBOARD_PORT='70000' is not a TCP port (0-65535)"),
        ({"DASHBOARD_PORT": "80.5"}, "DASHBOARD_PORT='80.5' must be a whole number >= 0"),
        ({"EXIT_WHEN_DONE": "maybe"}, "EXIT_WHEN_DONE='maybe' must be 1 or 0"),
    ],
)
def test_local_settings_errors_name_the_variable_and_the_form(env, message):
    with pytest.raises(SettingsError) as info:
        LocalSettings.from_env(env)
    assert str(info.value).startswith(message)


@pytest.mark.parametrize("text", ["1", "true", "YES", " on "])
def test_flags_true(text):
    assert SettingsReader({"EXIT_WHEN_DONE": text}).flag("EXIT_WHEN_DONE") is True


@pytest.mark.parametrize("text", ["0", "false", "No", "off", ""])
def test_flags_false(text):
    assert SettingsReader({"EXIT_WHEN_DONE": text}).flag("EXIT_WHEN_DONE") is False


def test_reader_defaults_and_choices():
    read = SettingsReader({"INGESTOR_PUBLISHER": " Kafka ", "MODEL_STORAGE": ""})
    assert read.text("MODEL_STORAGE") is None  # empty = unset = the default (required: None)
    assert read.text("TICKS_HUB_NAME") == "ticks"
    assert read.choice("INGESTOR_PUBLISHER", ("eventhubs", "kafka")) == "kafka"
    with pytest.raises(SettingsError, match=r"INGESTOR_PUBLISHER='rabbit' must be one of \('eventhubs', 'kafka'\)"):
        SettingsReader({"INGESTOR_PUBLISHER": "rabbit"}).choice("INGESTOR_PUBLISHER", ("eventhubs", "kafka"))
    with pytest.raises(KeyError):
        read.text("NOT_A_SETTING")


def test_function_settings_errors():
    with pytest.raises(SettingsError, match="MODEL_POLL_SECONDS='x' is not a number"):
        Settings.from_env({"MODEL_POLL_SECONDS": "x"})
    with pytest.raises(SettingsError, match="STATE_WARMUP_BARS='2.5' must be a whole number"):
        Settings.from_env({"STATE_WARMUP_BARS": "2.5"})
    with pytest.raises(SettingsError, match=r"PREDICTION_INTERVAL_LEVEL=1.0 must lie in \(0, 1\)"):
        Settings.from_env({"PREDICTION_INTERVAL_LEVEL": "1"})


def _environ_reads(path: Path) -> list[str]:
    """``os.environ.get(...)``, ``os.getenv(...)`` and ``os.environ[...]`` reads in one module."""
    found = []
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        text = ast.unparse(node) if isinstance(node, (ast.Call, ast.Subscript)) else ""
        if text.startswith(("os.environ.get(", "os.getenv(", "os.environ[")) and not isinstance(
            getattr(node, "ctx", None), (ast.Store, ast.Del)
        ):
            found.append(f"{path.relative_to(ROOT)}: {text}")
    return found


def test_settings_are_read_only_through_shared_settings():
    """The function app, the ingestor and the local stack read no environment variable themselves."""
    files = [ROOT / "function_app.py", *(ROOT / "functions").rglob("*.py"), *(ROOT / "ingestor").rglob("*.py"),
             *(ROOT / "local_stack").rglob("*.py"), *(ROOT / "shared").rglob("*.py")]
    reads = [r for f in files if f.exists() and f.name != "settings.py" for r in _environ_reads(f)]
    # local_stack/run.py saves the variables it sets, to restore them afterwards
    assert reads == ["local_stack/run.py: os.environ.get(k)"]
