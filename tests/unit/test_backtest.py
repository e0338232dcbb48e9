"""The backtest: quality bar on the real one-minute files, honest scores, the command line."""

from __future__ import annotations

import gzip
import json
import math
from datetime import UTC, datetime
from functools import cache

import numpy as np
import pytest

from shared.offline.backtest import BacktestSeries, rolling_mae_ratio, run_backtest, score
from shared.offline.evaluation import diebold_mariano, wilson_interval
from shared.offline.ohlcv import load_minute_bars
from tests.data_files import BINANCE_1M, FTX_1M, data_file
from tickcast.__main__ import main


@cache
def _result(name: str):
    return run_backtest(load_minute_bars(data_file(name)).bars, source=name)


@pytest.mark.parametrize("name", [FTX_1M, BINANCE_1M])
def test_default_model_meets_the_quality_bar(name):
    res = _result(name)
    m, p = res.model_scores, res.persistence_scores
    assert res.scored == res.bars - 2 - res.unlearned_gaps - res.warmup
    assert m["mae_ratio"] <= 1.000
    assert m["max_abs_move"] < 0.05
    assert 0.89 <= m["coverage"] <= 0.91
    assert m["forecast_changed_share"] > 0.5 and p["forecast_changed_share"] == 0.0  # not persistence in disguise
    assert 0.5 <= m["majority_direction_rate"] < 0.6
    assert math.isfinite(m["dm_stat"]) and 0 <= m["dm_p_value"] <= 1
    assert m["directional_accuracy_lo"] < m["directional_accuracy"] < m["directional_accuracy_hi"]
    assert all(np.isfinite(a).all() for a in vars(res.series).values())


def test_scores_agree_with_a_direct_computation():
    bars = load_minute_bars(data_file(FTX_1M)).bars[:3_000]
    res = run_backtest(bars, warmup=300)
    s = res.series
    assert res.scored == len(s.actual) == 3_000 - 2 - 300
    # the series is what a hand-rolled prequential loop sees: minute t's forecast came from t-1's close
    closes = {b.open_time_ms: b.close for b in bars}
    assert all(closes[int(t) - 60_000] == last for t, last in zip(s.time_ms, s.last))
    assert all(closes[int(t)] == act for t, act in zip(s.time_ms, s.actual))
    m = res.model_scores
    err = s.pred - s.actual
    assert m["mae"] == pytest.approx(np.abs(err).mean(), rel=1e-12)
    assert m["rmse"] == pytest.approx(math.sqrt((err ** 2).mean()), rel=1e-12)
    assert m["mae_ratio"] == pytest.approx(np.abs(err).mean() / np.abs(s.last - s.actual).mean(), rel=1e-12)
    assert m["coverage"] == np.mean([lo <= a <= hi for lo, a, hi in zip(s.lower, s.actual, s.upper)])
    moved = [(p, lst, a) for p, lst, a in zip(s.pred, s.last, s.actual) if a != lst]
    hits = sum((p > lst) == (a > lst) and p != lst for p, lst, a in moved)
    assert m["directional_accuracy"] == hits / len(moved)
    assert res.persistence_scores["mae"] == pytest.approx(np.abs(s.last - s.actual).mean(), rel=1e-12)


def test_diebold_mariano_matches_the_textbook_formula():
    rng = np.random.default_rng(5)
    a, b = np.abs(rng.normal(0, 1, 500)), np.abs(rng.normal(0, 1.1, 500))
    d = a - b
    expected = d.mean() / math.sqrt(d.var() / len(d))  # DM (1995), h = 1
    got = diebold_mariano(a, b)
    assert got.statistic == pytest.approx(expected, rel=1e-12)
    assert got.p_value == pytest.approx(math.erfc(abs(expected) / math.sqrt(2)), rel=1e-12)
    gamma1 = ((d[1:] - d.mean()) * (d[:-1] - d.mean())).sum() / len(d)
    two = diebold_mariano(a, b, horizon=2)
    assert two.statistic == pytest.approx(d.mean() / math.sqrt((d.var() + 2 * gamma1) / len(d)), rel=1e-12)
    with pytest.raises(ValueError):
        diebold_mariano([1.0], [1.0])


@pytest.mark.parametrize("k, n", [(0, 10), (7, 10), (10, 10), (5_200, 10_000)])
def test_wilson_bounds_solve_the_score_equation(k, n):
    z = 1.959963984540054
    lo, hi = wilson_interval(k, n)
    p = k / n
    assert 0 <= lo <= p <= hi <= 1
    for bound in (lo, hi):  # (p_hat - p)^2 = z^2 p (1 - p) / n at both ends
        assert (p - bound) ** 2 == pytest.approx(z * z * bound * (1 - bound) / n, abs=1e-12)


def test_rolling_mae_ratio():
    s = BacktestSeries(np.arange(4), np.ones(4), np.array([2.0, 2, 2, 2]), np.array([1.5, 1, 1.5, 1]),
                       np.zeros(4), np.full(4, 3.0))
    r = rolling_mae_ratio(s, window=2)
    assert np.isnan(r[0]) and list(r[1:]) == [0.75, 0.75, 0.75]
    assert score(s)["coverage"] == 1.0


# ----------------------------------------------------------------------------- command line
def _write_long_file(path, n: int = 900) -> None:
    """A long-format export: ISO times, volume_btc, two symbols, newest first."""
    bars = load_minute_bars(data_file(BINANCE_1M)).bars[1_000:1_000 + n]
    rows = []
    for sym, factor in (("BTCUSDT", 1.0), ("ETHUSDT", 0.02)):
        for b in bars:
            iso = datetime.fromtimestamp(b.open_time_ms / 1000, UTC).isoformat().replace("+00:00", "Z")
            rows.append(f"{iso},{sym},{b.open * factor},{b.high * factor},{b.low * factor},{b.close * factor},"
                        f"{b.volume},{b.volume * b.close}")
    with gzip.open(path, "wt") as fh:
        fh.write("date,symbol,open,high,low,close,volume_btc,volume_usdt\n")
        fh.write("\n".join(reversed(rows)) + "\n")


def test_cli_backtest_writes_table_json_and_plot(tmp_path, capsys):
    src = tmp_path / "long.csv.gz"
    _write_long_file(src)
    out_json, out_png = tmp_path / "r.json", tmp_path / "r.png"
    code = main(["backtest", str(src), "--symbol", "ETHUSDT", "--warmup", "100", "--json", str(out_json),
                 "--plot", str(out_png), "--no-progress"])
    assert code == 0
    printed = capsys.readouterr().out
    for label in ("MAE (USD)", "RMSE (USD)", "MAPE", "MAE ratio to persistence", "Diebold-Mariano",
                  "directional accuracy", "majority-direction rate", "90% interval coverage", "drift alarms",
                  "steps per second"):
        assert label in printed
    figures = json.loads(out_json.read_text())
    assert figures["scored_minutes"] == 900 - 2 - 100 and figures["model"] == "linear"
    assert figures["model_scores"]["mae"] < 1.0  # ETH-like prices (x0.02), not the BTC rows
    assert set(figures["persistence_scores"]) >= {"mae", "rmse", "mape_pct", "majority_direction_rate"}
    assert out_png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and out_png.stat().st_size < 300_000


def test_cli_rejects_bad_input_with_a_reason(tmp_path, capsys):
    src = tmp_path / "long.csv.gz"
    _write_long_file(src, n=50)
    assert main(["backtest", str(src), "--no-progress"]) == 2
    assert "BTCUSDT, ETHUSDT" in capsys.readouterr().err
    assert main(["backtest", str(src), "--symbol", "XRPUSDT", "--no-progress"]) == 2
    assert "no valid bars" in capsys.readouterr().err
    assert main(["backtest", str(src), "--symbol", "BTCUSDT", "--model", "nope", "--no-progress"]) == 2
    assert "linear, tree" in capsys.readouterr().err
    bad = tmp_path / "bad.csv"
    bad.write_text("when,price\n1,2\n")
    assert main(["backtest", str(bad), "--no-progress"]) == 2
    assert "open/high/low/close" in capsys.readouterr().err
    assert main(["backtest", str(tmp_path / "missing.csv"), "--no-progress"]) == 2


def test_cli_backtest_from_the_history_store(tmp_path, capsys):
    from shared.storage.history import HistoryStore

    url = f"sqlite:///{tmp_path / 'h.sqlite3'}"
    bars = load_minute_bars(data_file(FTX_1M), name="BTC-PERP", exchange="ftx").bars[:700]
    with HistoryStore.from_url(url) as store:
        store.upsert_bars(bars)
    assert main(["backtest", url, "--exchange", "ftx", "--symbol", "BTC-PERP", "--warmup", "50",
                 "--no-progress"]) == 0
    assert "scored minutes 648" in capsys.readouterr().out
    assert main(["backtest", url, "--symbol", "BTC-PERP", "--no-progress"]) == 2
