"""Tests of shared.storage.history on SQLite (this tier's ``history_store``, see ``conftest.py``);
``tests/integration/test_history.py`` runs the same store tests on MariaDB."""

from __future__ import annotations

import dataclasses

import pytest
import sqlalchemy as sa

from shared.contracts.events import Bar, Prediction
from shared.storage.history import HistoryStore, PredictionRecord, normalise_url
from shared.settings import Settings

T0 = 1_723_161_240_000  # 2024-08-09 00:54:00 UTC, a minute boundary
MIN = 60_000


def bar(i: int, close: float, *, symbol: str = "BTCUSDT", exchange: str = "binance", **kw) -> Bar:
    """Minute ``i`` after T0 with a plausible BTC OHLCV around ``close``."""
    values = dict(
        open=round(close - 6.38, 2),
        high=round(close + 12.87, 2),
        low=round(close - 36.43, 2),
        close=close,
        volume=12.48213,
        trade_count=1893,
    )
    values.update(kw)
    return Bar(exchange, symbol, T0 + i * MIN, **values)


def pred(
    i: int, predicted: float, *, version: str = "lin-20240809-01", symbol: str = "BTCUSDT", **kw
) -> Prediction:
    """Prediction made when minute ``i - 1`` closed, for the close of minute ``i``."""
    values = dict(
        exchange="binance",
        symbol=symbol,
        target_time_ms=T0 + i * MIN,
        made_at_ms=T0 + i * MIN + 37,
        last_close=61837.63,
        predicted_close=predicted,
        lower=round(predicted - 41.5, 2),
        upper=round(predicted + 41.5, 2),
        interval_level=0.9,
        model_version=version,
        latency_ms=12,
        drift_alarms=0,
    )
    values.update(kw)
    return Prediction(**values)


def plain(record: PredictionRecord) -> Prediction:
    """The Prediction part of a stored record."""
    names = [f.name for f in dataclasses.fields(Prediction)]
    return Prediction(**{n: getattr(record, n) for n in names})


# -- schema ----------------------------------------------------------------------------


def test_create_schema_is_idempotent_and_keeps_rows(history_store: HistoryStore) -> None:
    history_store.upsert_bars([bar(0, 61837.63)])
    history_store.create_schema()
    history_store.create_schema()
    with HistoryStore.from_url(history_store.engine.url) as again:  # creates tables "if missing"
        assert again.count_bars() == 1
        assert again.bars("binance", "BTCUSDT") == [bar(0, 61837.63)]
    tables = set(sa.inspect(history_store.engine).get_table_names())
    assert {"bars", "predictions"} <= tables


def test_prices_are_stored_as_doubles(history_store: HistoryStore) -> None:
    columns = {c["name"]: c for c in sa.inspect(history_store.engine).get_columns("bars")}
    for name in ("open", "high", "low", "close", "volume"):
        assert isinstance(columns[name]["type"], sa.Double), columns[name]["type"]
        assert str(columns[name]["type"]).startswith("DOUBLE")
    pk = sa.inspect(history_store.engine).get_pk_constraint("predictions")["constrained_columns"]
    assert pk == ["exchange", "symbol", "target_time_ms", "model_version"]
    # a value with no short decimal form survives the round trip exactly
    b = bar(0, 61837.63, volume=0.1 + 0.2, high=61850.000000000007)
    history_store.upsert_bars([b])
    (got,) = history_store.bars("binance", "BTCUSDT")
    assert got == b
    assert type(got.open_time_ms) is int and type(got.trade_count) is int and type(got.close) is float


# -- bars ------------------------------------------------------------------------------


def test_same_bar_twice_is_one_row(history_store: HistoryStore) -> None:
    b = bar(0, 61837.63)
    assert history_store.upsert_bars([b]) == 1
    assert history_store.upsert_bars([b]) == 1
    assert history_store.upsert_bars([b, b]) == 1  # duplicates inside one batch too
    assert history_store.count_bars() == 1
    assert history_store.bars("binance", "BTCUSDT") == [b]


def test_revised_bar_replaces_values(history_store: HistoryStore) -> None:
    first = bar(0, 61837.63, volume=12.48213, trade_count=1893)
    revised = bar(0, 61841.02, high=61861.5, volume=13.0071, trade_count=1904)
    history_store.upsert_bars([first, bar(1, 61852.1)])
    history_store.upsert_bars([revised])
    assert history_store.count_bars() == 2
    assert history_store.bars("binance", "BTCUSDT") == [revised, bar(1, 61852.1)]
    # within a batch, the later occurrence wins
    history_store.upsert_bars([bar(1, 61800.0), bar(1, 61799.5)])
    assert history_store.bars("binance", "BTCUSDT")[1].close == 61799.5


def test_revision_updates_updated_at(history_store: HistoryStore) -> None:
    history_store.upsert_bars([bar(0, 61837.63)])
    c = sa.table("bars", sa.column("updated_at_ms"))
    with history_store.engine.connect() as conn:
        first = conn.execute(sa.select(c.c.updated_at_ms)).scalar_one()
    assert abs(first - T0) > 0 and first > 1_700_000_000_000  # wall clock, ms since epoch
    history_store.upsert_bars([bar(0, 61840.0)])
    with history_store.engine.connect() as conn:
        assert conn.execute(sa.select(c.c.updated_at_ms)).scalar_one() >= first


def test_empty_upserts_write_nothing(history_store: HistoryStore) -> None:
    assert history_store.upsert_bars([]) == 0
    assert history_store.upsert_predictions(iter(())) == 0
    assert history_store.count_bars() == 0 and history_store.count_predictions() == 0


def test_failed_batch_keeps_nothing(history_store: HistoryStore) -> None:
    bad = bar(1, 61852.1, trade_count=None)  # NOT NULL column: the database refuses the row
    with pytest.raises(sa.exc.SQLAlchemyError):
        history_store.upsert_bars([bar(0, 61837.63), bad])
    assert history_store.count_bars() == 0


def test_key_longer_than_column_is_refused(history_store: HistoryStore) -> None:
    with pytest.raises(ValueError, match="symbol longer than 64"):
        history_store.upsert_bars([bar(0, 61837.63, symbol="X" * 65)])
    with pytest.raises(ValueError, match="model_version"):
        history_store.upsert_predictions([pred(1, 61840.0, version="v" * 129)])
    assert history_store.count_bars() == 0 and history_store.count_predictions() == 0


def test_symbol_with_slash(history_store: HistoryStore) -> None:
    kraken = bar(0, 61829.4, exchange="kraken", symbol="BTC/USD", volume=0.73125, trade_count=211)
    history_store.upsert_bars([kraken, bar(0, 61837.63)])
    history_store.upsert_predictions([pred(1, 61833.0, symbol="BTC/USD", exchange="kraken")])
    history_store.upsert_bars([bar(1, 61835.9, exchange="kraken", symbol="BTC/USD")])
    assert history_store.bars("kraken", "BTC/USD")[0] == kraken
    assert history_store.symbols() == [("binance", "BTCUSDT"), ("kraken", "BTC/USD")]
    (p,) = history_store.predictions("kraken", "BTC/USD")
    assert p.realised_close == 61835.9


def test_symbols_are_case_sensitive(history_store: HistoryStore) -> None:
    # MySQL compares strings case-insensitively by default; the store must not
    history_store.upsert_bars([bar(0, 61837.63), bar(0, 100.0, symbol="btcusdt")])
    assert history_store.count_bars() == 2
    assert [b.close for b in history_store.bars("binance", "BTCUSDT")] == [61837.63]
    assert [b.close for b in history_store.bars("binance", "btcusdt")] == [100.0]


# -- predictions -----------------------------------------------------------------------


def test_prediction_upsert_is_idempotent(history_store: HistoryStore) -> None:
    p = pred(1, 61840.12, latency_ms=-3)  # negative: producer and consumer clocks differ
    assert history_store.upsert_predictions([p]) == 1
    assert history_store.upsert_predictions([p, p]) == 1
    assert history_store.count_predictions() == 1
    (got,) = history_store.predictions("binance", "BTCUSDT")
    assert isinstance(got, PredictionRecord) and isinstance(got, Prediction)
    assert plain(got) == p
    assert got.realised_close is None


def test_revised_prediction_replaces_values_and_versions_are_separate(history_store: HistoryStore) -> None:
    history_store.upsert_predictions([pred(1, 61840.12), pred(1, 61839.0, version="naive")])
    revised = pred(1, 61845.77, made_at_ms=T0 + MIN + 91, latency_ms=66)
    history_store.upsert_predictions([revised])
    got = history_store.predictions("binance", "BTCUSDT")
    assert [(r.model_version, r.predicted_close) for r in got] == [
        ("lin-20240809-01", 61845.77),
        ("naive", 61839.0),
    ]
    assert plain(got[0]) == revised


def test_realised_close_filled_when_bar_arrives_after_prediction(history_store: HistoryStore) -> None:
    history_store.upsert_bars([bar(0, 61837.63)])
    history_store.upsert_predictions(
        [pred(1, 61840.12), pred(1, 61837.63, version="naive"), pred(2, 61850.0)]
    )
    assert [r.realised_close for r in history_store.predictions("binance", "BTCUSDT")] == [None, None, None]
    history_store.upsert_bars([bar(1, 61852.01)])
    got = history_store.predictions("binance", "BTCUSDT")
    assert [(r.target_time_ms, r.model_version, r.realised_close) for r in got] == [
        (T0 + MIN, "lin-20240809-01", 61852.01),
        (T0 + MIN, "naive", 61852.01),
        (T0 + 2 * MIN, "lin-20240809-01", None),  # its bar has not closed yet
    ]
    # a revised bar revises the realised close
    history_store.upsert_bars([bar(1, 61849.5)])
    got = history_store.predictions("binance", "BTCUSDT")
    assert [r.realised_close for r in got] == [61849.5, 61849.5, None]


def test_realised_close_filled_when_bar_arrived_before_prediction(history_store: HistoryStore) -> None:
    history_store.upsert_bars([bar(0, 61837.63), bar(1, 61852.01), bar(2, 61830.2)])
    history_store.upsert_predictions([pred(1, 61840.12), pred(3, 61831.0)])
    got = history_store.predictions("binance", "BTCUSDT")
    assert [(r.target_time_ms, r.realised_close) for r in got] == [(T0 + MIN, 61852.01), (T0 + 3 * MIN, None)]
    # re-delivering the prediction keeps the realised close
    history_store.upsert_predictions([pred(1, 61840.12)])
    assert history_store.predictions("binance", "BTCUSDT")[0].realised_close == 61852.01


def test_realised_close_only_from_the_same_symbol_and_exchange(history_store: HistoryStore) -> None:
    history_store.upsert_predictions([pred(1, 61840.12)])
    history_store.upsert_bars(
        [
            bar(1, 3401.7, symbol="ETHUSDT"),
            bar(1, 61829.4, exchange="kraken", symbol="BTCUSDT"),
            bar(2, 61860.0),
        ]
    )
    assert history_store.predictions("binance", "BTCUSDT")[0].realised_close is None


# -- reads -----------------------------------------------------------------------------


def test_reads_are_ordered_and_filtered_by_time(history_store: HistoryStore) -> None:
    closes = [61837.63, 61852.01, 61830.2, 61815.0, 61822.48]
    history_store.upsert_bars([bar(i, closes[i]) for i in (3, 0, 4, 2, 1)])  # out of order
    history_store.upsert_bars([bar(2, 3401.7, symbol="ETHUSDT")])
    assert [b.close for b in history_store.bars("binance", "BTCUSDT")] == closes
    # half-open range [start, end)
    got = history_store.bars("binance", "BTCUSDT", start_ms=T0 + MIN, end_ms=T0 + 4 * MIN)
    assert [b.open_time_ms for b in got] == [T0 + MIN, T0 + 2 * MIN, T0 + 3 * MIN]
    assert [b.close for b in history_store.bars("binance", "BTCUSDT", start_ms=T0 + 3 * MIN)] == closes[3:]
    assert [b.close for b in history_store.bars("binance", "BTCUSDT", end_ms=T0 + MIN)] == closes[:1]
    got = history_store.bars("binance", "BTCUSDT", start_ms=T0 + MIN, limit=2)
    assert [b.close for b in got] == closes[1:3]
    assert history_store.bars("binance", "BTCUSDT", limit=0) == []
    assert history_store.bars("binance", "SOLUSDT") == []
    assert history_store.bars("binance", "ETHUSDT") == [bar(2, 3401.7, symbol="ETHUSDT")]

    preds = [pred(i, 61840.0 + i) for i in (4, 2, 3, 1)] + [pred(2, 61800.0, version="a0")]
    history_store.upsert_predictions(preds)
    got = history_store.predictions("binance", "BTCUSDT", start_ms=T0 + 2 * MIN, end_ms=T0 + 4 * MIN)
    assert [(r.target_time_ms, r.model_version, r.predicted_close) for r in got] == [
        (T0 + 2 * MIN, "a0", 61800.0),
        (T0 + 2 * MIN, "lin-20240809-01", 61842.0),
        (T0 + 3 * MIN, "lin-20240809-01", 61843.0),
    ]
    assert [r.realised_close for r in got] == [61830.2, 61830.2, 61815.0]
    assert len(history_store.predictions("binance", "BTCUSDT")) == 5
    assert history_store.predictions("binance", "ETHUSDT") == []


def test_latest_bars(history_store: HistoryStore) -> None:
    closes = [61837.63, 61852.01, 61830.2, 61815.0, 61822.48]
    history_store.upsert_bars([bar(i, c) for i, c in enumerate(closes)])
    history_store.upsert_bars([bar(9, 3401.7, symbol="ETHUSDT")])
    assert [b.close for b in history_store.latest_bars("binance", "BTCUSDT", 2)] == [61815.0, 61822.48]
    assert [b.open_time_ms for b in history_store.latest_bars("binance", "BTCUSDT", 10)] == [
        T0 + i * MIN for i in range(5)
    ]
    assert history_store.latest_bars("binance", "BTCUSDT", 0) == []
    assert history_store.latest_bars("kraken", "BTCUSDT", 3) == []
    with pytest.raises(ValueError):
        history_store.latest_bars("binance", "BTCUSDT", -1)


# -- opening and closing ---------------------------------------------------------------


def test_url_normalisation() -> None:
    assert normalise_url("mysql://u:p@db.example:3306/tickcast").drivername == "mysql+pymysql"
    url = normalise_url("mysql+pymysql://u:p%40ss@db.example/tickcast?charset=utf8")
    assert (url.drivername, url.password, url.query["charset"]) == ("mysql+pymysql", "p@ss", "utf8")
    assert normalise_url("mysql://u@h/db").query["charset"] == "utf8mb4"
    assert normalise_url("mariadb://u@h/db").drivername == "mariadb+pymysql"
    assert normalise_url("sqlite:///var/h.db").database == "var/h.db"
    assert normalise_url("sqlite:////var/h.db").database == "/var/h.db"
    assert normalise_url(None).database == "tickcast-history.sqlite3"
    assert normalise_url("  ", sqlite_path="/data/x.sqlite3").drivername == "sqlite+pysqlite"
    for bad in ("postgresql://u@h/db", "mysql+mysqldb://u@h/db", "not a url"):
        with pytest.raises(ValueError):
            normalise_url(bad)


def test_from_url_accepts_plain_mysql_scheme(history_store: HistoryStore) -> None:
    history_store.upsert_bars([bar(0, 61837.63)])
    url = history_store.engine.url
    if url.get_backend_name() == "mysql":
        url = url.set(drivername="mysql")  # what a user writes in MYSQL_URL
    text = url.render_as_string(hide_password=False)
    with HistoryStore.from_url(text) as store:
        expected = "mysql+pymysql" if store.dialect == "mysql" else "sqlite+pysqlite"
        assert store.engine.url.drivername == expected
        assert store.bars("binance", "BTCUSDT") == [bar(0, 61837.63)]


def test_from_settings_uses_sqlite_when_mysql_url_is_empty(tmp_path) -> None:
    path = tmp_path / "sub" / "history.sqlite3"
    settings = Settings.from_env({"HISTORY_SQLITE_PATH": str(path)})
    with HistoryStore.from_settings(settings) as store:
        assert store.dialect == "sqlite"
        store.upsert_bars([bar(0, 61837.63)])
    assert path.exists()
    with HistoryStore.from_url(f"sqlite:///{path}") as store:
        assert store.count_bars() == 1


def test_closed_store_refuses_use(history_store: HistoryStore) -> None:
    with HistoryStore.from_url(history_store.engine.url) as store:
        store.upsert_bars([bar(0, 61837.63)])
    store.close()  # idempotent
    with pytest.raises(RuntimeError, match="closed"):
        store.bars("binance", "BTCUSDT")
    assert "closed" in repr(store) and "tickcast-test" not in repr(store)
    assert history_store.count_bars() == 1


def test_reads_order_does_not_rely_on_storage_order(history_store: HistoryStore) -> None:
    """Without ORDER BY the order is unspecified; SQLite can be told to reverse it to prove there is one."""
    if history_store.dialect == "sqlite":
        sa.event.listen(
            history_store.engine,
            "connect",
            lambda dbapi_conn, _: dbapi_conn.execute("PRAGMA reverse_unordered_selects=ON"),
        )
        history_store.engine.dispose()
    history_store.upsert_bars([bar(i, 61800.0 + i) for i in range(4)])
    history_store.upsert_bars(
        [bar(0, 61829.4, exchange="kraken", symbol="BTC/USD"), bar(0, 3401.7, symbol="ETHUSDT")]
    )
    history_store.upsert_predictions([pred(i, 61840.0 + i) for i in range(1, 4)])
    got = history_store.bars("binance", "BTCUSDT")
    assert [b.open_time_ms for b in got] == [T0 + i * MIN for i in range(4)]
    assert [b.close for b in history_store.latest_bars("binance", "BTCUSDT", 2)] == [61802.0, 61803.0]
    assert [p.target_time_ms for p in history_store.predictions("binance", "BTCUSDT")] == [
        T0 + i * MIN for i in range(1, 4)
    ]
    assert history_store.symbols() == [("binance", "BTCUSDT"), ("binance", "ETHUSDT"), ("kraken", "BTC/USD")]
