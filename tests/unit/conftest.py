"""The unit tier starts no server.

* A unit test that asks (directly or through another fixture) for one of the session servers
  of ``tests/servers/`` fails at set-up, with advice to move it to ``tests/integration``.
* ``history_store`` is SQLite only: ``tests/servers/mariadb.py`` parametrises it over SQLite
  and MariaDB; this override keeps the unit tier's store tests on an SQLite file in
  ``tmp_path``, and ``tests/integration/test_history.py`` runs the same tests on MariaDB.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from shared.storage.history import HistoryStore

SERVER_FIXTURES = frozenset({"kafka_broker", "azurite", "mariadb_server"})
"""The session fixtures of ``tests/servers/`` that start a server process."""


def pytest_runtest_setup(item: pytest.Item) -> None:
    """Fail a unit test that would start a Tansu, Azurite or MariaDB server, before it starts one."""
    wanted = sorted(SERVER_FIXTURES & set(getattr(item, "fixturenames", ())))
    if wanted:
        pytest.fail(f"a unit test starts no server, this one asks for {wanted}: move it to tests/integration")


@pytest.fixture
def history_store(tmp_path: Path) -> Iterator[HistoryStore]:
    """A fresh, empty history store on an SQLite file in ``tmp_path``."""
    with HistoryStore.from_url(f"sqlite:///{tmp_path / 'history.sqlite3'}") as store:
        yield store
