"""Schema upgrades of the history store keep every row, on SQLite (this tier's ``store_url``);
``tests/integration/test_history_migrations.py`` runs the same tests on MariaDB.

The previous schema (revision 0001: the tables of ``shared/history.py`` before commit fe8cfff added
``drift_alarms``) is built here by hand with SQLAlchemy Core, independently of the revision files.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterator
from pathlib import Path

import pytest
import sqlalchemy as sa
from sqlalchemy.dialects import mysql

from shared.contracts.batches import RawEvent
from shared.contracts.events import encode
from shared.storage.archiving import ArchiveService
from shared.storage.history import HistoryStore, metadata, normalise_url
from shared.storage.history import migrations
from shared.storage.history.connection import create_engine
from tests.unit.test_history import bar, pred

_MY = ("mysql", "mariadb")


def _text(n: int) -> sa.types.TypeEngine[str]:
    return sa.String(n).with_variant(mysql.VARCHAR(n, charset="utf8mb4", collation="utf8mb4_bin"), *_MY)


def _double() -> sa.types.TypeEngine[float]:
    return sa.Double().with_variant(mysql.DOUBLE(asdecimal=False), *_MY)


def revision_1_metadata() -> sa.MetaData:
    """The schema before ``drift_alarms`` (``git show fe8cfff^:shared/history.py``)."""
    old = sa.MetaData()
    opts = {"mysql_engine": "InnoDB", "mysql_charset": "utf8mb4"}
    key = lambda minute: [  # noqa: E731
        sa.Column("exchange", _text(32), primary_key=True),
        sa.Column("symbol", _text(64), primary_key=True),
        sa.Column(minute, sa.BigInteger, primary_key=True, autoincrement=False),
    ]
    price = lambda name, nullable=False: sa.Column(name, _double(), nullable=nullable)  # noqa: E731
    sa.Table("bars", old, *key("open_time_ms"), *map(price, ["open", "high", "low", "close", "volume"]),
             sa.Column("trade_count", sa.Integer, nullable=False),
             sa.Column("updated_at_ms", sa.BigInteger, nullable=False), **opts)
    sa.Table("predictions", old, *key("target_time_ms"), sa.Column("model_version", _text(128), primary_key=True),
             sa.Column("made_at_ms", sa.BigInteger, nullable=False),
             *map(price, ["last_close", "predicted_close", "lower", "upper", "interval_level"]),
             sa.Column("latency_ms", sa.BigInteger, nullable=False), price("realised_close", True),
             sa.Column("updated_at_ms", sa.BigInteger, nullable=False), **opts)
    return old


@pytest.fixture
def store_url(tmp_path: Path) -> str:
    """URL of a new, empty database (an SQLite file here; MariaDB in the integration tier)."""
    return f"sqlite:///{tmp_path / 'history.sqlite3'}"


@pytest.fixture
def engine(store_url: str) -> Iterator[sa.Engine]:
    eng = create_engine(normalise_url(store_url))
    yield eng
    eng.dispose()


def _rows(engine: sa.Engine, table: str, columns: list[str]) -> list[tuple[object, ...]]:
    cols = [sa.column(c) for c in columns]
    with engine.connect() as conn:
        return [tuple(r) for r in conn.execute(sa.select(*cols).select_from(sa.table(table)).order_by(*cols))]


def _columns(engine: sa.Engine) -> dict[str, list[tuple[str, str, bool, object]]]:
    inspector = sa.inspect(engine)
    return {t: [(c["name"], str(c["type"]), c["nullable"], c["default"]) for c in inspector.get_columns(t)]
            for t in ("bars", "predictions")}


def _fill(engine: sa.Engine, tables: sa.MetaData) -> None:
    """Three bars and three predictions (one realised), written as the old code wrote them."""
    with engine.begin() as conn:
        conn.execute(tables.tables["bars"].insert(), [
            {**{f.name: getattr(b, f.name) for f in dataclasses.fields(b)}, "updated_at_ms": 1}
            for b in (bar(0, 61837.63), bar(1, 61840.0), bar(2, 61790.5, symbol="ETHUSDT"))])
        conn.execute(tables.tables["predictions"].insert(), [
            {**{f.name: getattr(p, f.name) for f in dataclasses.fields(p) if f.name != "drift_alarms"},
             "realised_close": realised, "updated_at_ms": 2}
            for p, realised in ((pred(1, 61845.0), 61840.0), (pred(3, 61850.0), None),
                                (pred(3, 61851.0, version="tree-20240809-02"), None))])


def _statements(engine: sa.Engine) -> list[str]:
    seen: list[str] = []
    sa.event.listen(engine, "before_cursor_execute", lambda *a: seen.append(a[2].split()[0].upper()))
    return seen


def test_upgrade_from_revision_1_keeps_every_row_and_archives_drift_alarms(engine: sa.Engine, store_url: str) -> None:
    old = revision_1_metadata()
    old.create_all(engine)
    _fill(engine, old)
    before = {t: _rows(engine, t, [c.name for c in old.tables[t].columns]) for t in ("bars", "predictions")}
    assert len(before["bars"]) == 3 and len(before["predictions"]) == 3

    with HistoryStore.from_url(store_url) as store:
        with store.engine.connect() as conn:
            assert migrations.current_revision(conn) == migrations.head_revision() == "0002"
        assert {t: _rows(store.engine, t, [c.name for c in old.tables[t].columns]) for t in before} == before
        assert _rows(store.engine, "predictions", ["drift_alarms"]) == [(0,)] * 3
        assert [r.predicted_close for r in store.predictions("binance", "BTCUSDT")] == [61845.0, 61850.0, 61851.0]

        late = pred(4, 61860.0, drift_alarms=3)
        result = ArchiveService(store).handle([RawEvent(encode(bar(3, 61855.0)), "predictions/0@7"),
                                               RawEvent(encode(late), "predictions/0@8")])
        assert (result.counts["bars"], result.counts["predictions"], result.counts["malformed"]) == (1, 1, 0)
        stored = store.recent_predictions("binance", "BTCUSDT", 1)[0]
        assert (stored.target_time_ms, stored.drift_alarms) == (late.target_time_ms, 3)
        assert store.count_bars() == 4 and store.count_predictions() == 4
        # revision 0001's predictions keep their realised closes; the new bar realises pred(3, ...)
        realised = {(r.target_time_ms, r.model_version): r.realised_close
                    for r in store.predictions("binance", "BTCUSDT")}
        assert list(realised.values()) == [61840.0, 61855.0, 61855.0, None]


def test_opening_an_up_to_date_store_only_reads_the_revision(engine: sa.Engine, store_url: str) -> None:
    HistoryStore.from_url(store_url).close()
    columns = _columns(engine)
    seen = _statements(engine)
    assert migrations.upgrade(engine) == ("0002", "0002")
    assert seen and set(seen) <= {"SELECT", "PRAGMA", "DESCRIBE", "SHOW"}, seen  # reads only
    assert _columns(engine) == columns


def test_an_unstamped_store_of_todays_create_all_is_stamped_not_altered(engine: sa.Engine, store_url: str) -> None:
    metadata.create_all(engine)
    with engine.begin() as conn:
        conn.execute(metadata.tables["predictions"].insert(), [
            {**{f.name: getattr(p, f.name) for f in dataclasses.fields(p)}, "updated_at_ms": 5}
            for p in (pred(1, 61845.0, drift_alarms=2), pred(2, 61846.0))])
    columns = _columns(engine)
    rows = _rows(engine, "predictions", list(metadata.tables["predictions"].columns.keys()))
    seen = _statements(engine)
    assert migrations.upgrade(engine) == (None, "0002")
    assert not [s for s in seen if s in ("ALTER", "DROP")], seen
    assert [s for s in seen if s == "CREATE"] == ["CREATE"]  # alembic_version only
    assert _columns(engine) == columns
    assert _rows(engine, "predictions", list(metadata.tables["predictions"].columns.keys())) == rows


def test_the_revisions_build_exactly_the_schema_of_the_code(engine: sa.Engine, store_url: str) -> None:
    from alembic.autogenerate import compare_metadata
    from alembic.runtime.migration import MigrationContext

    HistoryStore.from_url(store_url).close()
    with engine.connect() as conn:
        diff = compare_metadata(MigrationContext.configure(conn), metadata)
    assert diff == []
