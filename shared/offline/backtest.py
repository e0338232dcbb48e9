"""Honest backtest of a forecaster family on one-minute bars: prequential, beside persistence.

Prequential evaluation (A. P. Dawid, "Statistical theory: the prequential approach", JRSS A
147, 1984): at each bar close the forecaster predicts the next close, then -- when that
minute closes -- is scored and learns it. Nothing is fitted on the minutes it is scored on.
The first ``warmup`` realised minutes are learned but not scored. Forecasts whose target
minute is missing (a gap) are neither scored nor learned: the rule of
:class:`shared.forecast.prequential.PrequentialStepper`, the one the engine serves with.

Scores, for the model and for persistence (next close = last close), over the scored
minutes (prices in the file's quote currency, "USD" below):

- MAE and RMSE in USD, MAPE in percent of the realised close;
- MAE ratio to persistence, with the Diebold-Mariano statistic of the absolute-error
  differential (:func:`shared.offline.evaluation.diebold_mariano`; negative = model better);
- directional accuracy on the minutes that moved (a forecast equal to the last close counts
  as wrong), with its 95 % Wilson interval, beside the majority-direction rate (the share
  of the more frequent direction: what always guessing it, in hindsight, would score);
- the share of minutes whose forecast differs from the last close by at least
  :data:`MOVE_THRESHOLD` (0.01 bp), and the median and largest relative distance;
- coverage and mean width (USD) of the prediction interval; drift alarms; steps per second
  (features + predict + learn + bookkeeping, on one core).
"""

from __future__ import annotations

import math
import time
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from shared.offline.evaluation import diebold_mariano, wilson_interval
from shared.contracts.events import Bar
from shared.forecast.forecaster import make_forecaster
from shared.forecast.prequential import PrequentialStepper

DEFAULT_WARMUP = 500
"""Realised minutes learned before scoring starts."""
MOVE_THRESHOLD = 1e-6
"""A forecast "differs from the last close" when ``|pred / last - 1| >= 1e-6`` (0.01 basis point)."""
ROLLING_MINUTES = 1_440
"""Window of the rolling MAE ratio in the plot (one day)."""


@dataclass
class BacktestSeries:
    """Per scored minute: target minute (ms since epoch UTC), last close, realised close,
    forecast and interval bounds (USD); arrays of equal length.

    When the forecaster exposes ``internals(x)`` (:meth:`shared.forecast.forecaster.ReturnForecaster.internals`),
    also what each forecast was made of: ``model_return`` (the model's log return before the
    guard), ``sigma`` (volatility scale, log return per minute), ``half_width`` (interval
    half-width in units of sigma) and ``guard_weight``; else these are ``None``.
    """

    time_ms: np.ndarray
    last: np.ndarray
    actual: np.ndarray
    pred: np.ndarray
    lower: np.ndarray
    upper: np.ndarray
    model_return: np.ndarray | None = None
    sigma: np.ndarray | None = None
    half_width: np.ndarray | None = None
    guard_weight: np.ndarray | None = None


@dataclass
class BacktestResult:
    """Everything a backtest reports; :meth:`to_dict` is what ``--json`` writes."""

    source: str
    symbol: str
    model: str
    interval_level: float
    warmup: int
    bars: int
    scored: int
    unlearned_gaps: int
    drift_alarms: int
    guard_weight: float
    seconds: float
    steps_per_second: float
    model_scores: dict[str, float]
    persistence_scores: dict[str, float]
    series: BacktestSeries | None = field(default=None, repr=False)

    def to_dict(self) -> dict:
        """JSON-ready figures (no per-minute series)."""
        return {
            "source": self.source, "symbol": self.symbol, "model": self.model,
            "interval_level": self.interval_level, "warmup_minutes": self.warmup, "bars": self.bars,
            "scored_minutes": self.scored, "unlearned_gaps": self.unlearned_gaps,
            "drift_alarms": self.drift_alarms, "guard_weight_end": self.guard_weight,
            "seconds": self.seconds, "steps_per_second": self.steps_per_second,
            "model_scores": self.model_scores, "persistence_scores": self.persistence_scores,
        }

    def table(self) -> str:
        """The printed report: one row per figure, columns model and persistence."""
        m, p = self.model_scores, self.persistence_scores
        lvl = f"{self.interval_level:.0%}"

        def pct(v: float, digits: int = 2) -> str:
            return "—" if v is None or not math.isfinite(v) else f"{100 * v:.{digits}f} %"

        rows = [
            ("MAE (USD)", f"{m['mae']:.4f}", f"{p['mae']:.4f}"),
            ("RMSE (USD)", f"{m['rmse']:.4f}", f"{p['rmse']:.4f}"),
            ("MAPE", f"{m['mape_pct']:.5f} %", f"{p['mape_pct']:.5f} %"),
            ("MAE ratio to persistence", f"{m['mae_ratio']:.5f}", f"{p['mae_ratio']:.5f}"),
            ("Diebold-Mariano stat (p, two-sided)", f"{m['dm_stat']:+.2f} (p={m['dm_p_value']:.3f})", "—"),
            ("directional accuracy, moved minutes",
             f"{pct(m['directional_accuracy'])} [{pct(m['directional_accuracy_lo'])}, "
             f"{pct(m['directional_accuracy_hi'])}]", "—"),
            ("majority-direction rate", pct(m["majority_direction_rate"]), pct(p["majority_direction_rate"])),
            ("minutes that moved", f"{m['moved_minutes']:,}", f"{p['moved_minutes']:,}"),
            ("forecast differs from last close", pct(m["forecast_changed_share"], 1),
             pct(p["forecast_changed_share"], 1)),
            ("median |forecast - last| (bp)", f"{m['median_abs_move_bp']:.4f}", f"{p['median_abs_move_bp']:.4f}"),
            ("max |forecast / last - 1|", pct(m["max_abs_move"], 4), pct(p["max_abs_move"], 4)),
            (f"{lvl} interval coverage", pct(m["coverage"]), "—"),
            (f"{lvl} interval mean width (USD)", f"{m['mean_width']:.3f}", "—"),
            ("drift alarms", f"{self.drift_alarms}", "—"),
            ("steps per second", f"{self.steps_per_second:,.0f}", "—"),
        ]
        head = (
            f"backtest {self.source}{f' [{self.symbol}]' if self.symbol else ''} model={self.model} level={lvl} warm-up={self.warmup} min\n"
            f"bars {self.bars:,}; scored minutes {self.scored:,}; unlearned gaps {self.unlearned_gaps};"
            f" guard weight at end {self.guard_weight:.3f}; {self.seconds:.1f} s"
        )
        w0 = max(len(r[0]) for r in rows)
        w1 = max(len(r[1]) for r in rows + [("", "model", "")])
        w2 = max(len(r[2]) for r in rows + [("", "", "persistence")])
        lines = [head, f"{'':<{w0}}  {'model':>{w1}}  {'persistence':>{w2}}", "-" * (w0 + w1 + w2 + 4)]
        lines += [f"{a:<{w0}}  {b:>{w1}}  {c:>{w2}}" for a, b, c in rows]
        return "\n".join(lines)


def score(series: BacktestSeries, pred: np.ndarray | None = None, interval: bool = True) -> dict[str, float]:
    """Scores of the forecast ``pred`` (default ``series.pred``) against ``series.actual``.

    Persistence is scored by passing ``pred=series.last, interval=False``.

    Raises
    ------
    ValueError
        If the series is empty.
    """
    last, actual = series.last, series.actual
    pred = series.pred if pred is None else pred
    n = len(actual)
    if n == 0:
        raise ValueError("nothing to score: no realised minute after the warm-up")
    err = pred - actual
    abs_err = np.abs(err)
    persist_abs = np.abs(last - actual)
    moved = actual != last
    n_moved = int(moved.sum())
    up = int((actual[moved] > last[moved]).sum())
    correct = int((np.sign(pred[moved] - last[moved]) == np.sign(actual[moved] - last[moved])).sum())
    rel_move = np.abs(pred / last - 1.0)
    out = {
        "mae": float(abs_err.mean()),
        "rmse": float(math.sqrt(float((err * err).mean()))),
        "mape_pct": float((abs_err / actual).mean() * 100.0),
        "mae_ratio": float(abs_err.mean() / persist_abs.mean()) if persist_abs.mean() > 0 else math.nan,
        "moved_minutes": n_moved,
        "majority_direction_rate": max(up, n_moved - up) / n_moved if n_moved else math.nan,
        "forecast_changed_share": float((rel_move >= MOVE_THRESHOLD).mean()),
        "median_abs_move_bp": float(np.median(rel_move) * 1e4),
        "max_abs_move": float(rel_move.max()),
    }
    if interval:
        dm = diebold_mariano(abs_err, persist_abs) if n >= 2 else None
        lo, hi = wilson_interval(correct, n_moved) if n_moved else (math.nan, math.nan)
        out |= {
            "dm_stat": dm.statistic if dm else math.nan,
            "dm_p_value": dm.p_value if dm else math.nan,
            "directional_accuracy": correct / n_moved if n_moved else math.nan,
            "directional_accuracy_lo": lo,
            "directional_accuracy_hi": hi,
            "coverage": float(((series.lower <= actual) & (actual <= series.upper)).mean()),
            "mean_width": float((series.upper - series.lower).mean()),
        }
    return out


def run_backtest(
    bars: Sequence[Bar] | Iterable[Bar],
    model: str = "",
    interval_level: float = 0.9,
    warmup: int = DEFAULT_WARMUP,
    *,
    source: str = "",
    progress: bool = False,
) -> BacktestResult:
    """Prequential backtest of a fresh forecaster of family ``model`` on ``bars`` (one symbol, ascending).

    Parameters
    ----------
    bars : one-minute bars in ascending minute order.
    model : family name (``""`` = default); interval_level : in (0, 1).
    warmup : realised minutes learned before scoring starts (>= 0).
    source : label of the data in the report; progress : show a tqdm progress bar on stderr.

    Raises
    ------
    ValueError
        Unknown model, bad level, negative warm-up, bars out of order, or nothing to score.
    """
    if warmup < 0:
        raise ValueError(f"warmup must be >= 0, got {warmup}")
    bars = list(bars)
    forecaster = make_forecaster(model, interval_level)
    stepper = PrequentialStepper(forecaster)
    n = len(bars)
    cap = max(n - 1, 0)
    t_arr, last_arr, act_arr = np.empty(cap, np.int64), np.empty(cap), np.empty(cap)
    pred_arr, lo_arr, hi_arr = np.empty(cap), np.empty(cap), np.empty(cap)
    internals = getattr(forecaster, "internals", None)
    inner = np.empty((cap, 4)) if internals is not None else None
    made = None  # internals of the pending forecast
    k = 0
    bar_progress = None
    if progress:
        from tqdm import tqdm

        bar_progress = tqdm(total=n, unit="bar", desc=f"backtest {forecaster.name}", mininterval=0.5, leave=False)
    prev_t = None
    step = stepper.step
    t0 = time.perf_counter()
    for i, bar in enumerate(bars):
        t = bar.open_time_ms
        if prev_t is not None and t <= prev_t:
            raise ValueError(f"bars must be in ascending minute order: {t} after {prev_t} (bar {i})")
        prev_t = t
        done = step(bar)
        if done is not None and stepper.resolved > warmup:  # the first `warmup` resolved: learned only
            t_arr[k], last_arr[k], act_arr[k] = t, done.last_close, bar.close
            pred_arr[k], lo_arr[k], hi_arr[k] = done.predicted, done.lower, done.upper
            if inner is not None:
                inner[k] = made
            k += 1
        if inner is not None and stepper.pending is not None:
            made = internals(stepper.pending.x)
        if bar_progress is not None and i % 1000 == 999:
            bar_progress.update(1000)
    seconds = time.perf_counter() - t0
    if bar_progress is not None:
        bar_progress.update(n - bar_progress.n)
        bar_progress.close()
    series = BacktestSeries(t_arr[:k], last_arr[:k], act_arr[:k], pred_arr[:k], lo_arr[:k], hi_arr[:k],
                            *((inner[:k, j].copy() for j in range(4)) if inner is not None else ()))
    model_scores = score(series)
    persistence_scores = score(series, series.last, interval=False)
    persistence_scores["mae_ratio"] = 1.0
    return BacktestResult(
        source=source, symbol=bars[0].symbol if bars else "", model=forecaster.name,
        interval_level=forecaster.interval_level, warmup=warmup, bars=n, scored=k, unlearned_gaps=stepper.gaps,
        drift_alarms=forecaster.drift_alarms, guard_weight=forecaster.guard_weight, seconds=seconds,
        steps_per_second=n / seconds if seconds > 0 else math.nan, model_scores=model_scores,
        persistence_scores=persistence_scores, series=series,
    )


def rolling_mae_ratio(series: BacktestSeries, window: int = ROLLING_MINUTES) -> np.ndarray:
    """MAE ratio to persistence over a trailing window of ``window`` scored minutes (NaN before it fills)."""
    a = np.abs(series.pred - series.actual)
    b = np.abs(series.last - series.actual)
    out = np.full(len(a), np.nan)
    if len(a) >= window:
        ca, cb = np.cumsum(np.r_[0.0, a]), np.cumsum(np.r_[0.0, b])
        num, den = ca[window:] - ca[:-window], cb[window:] - cb[:-window]
        with np.errstate(invalid="ignore", divide="ignore"):
            out[window - 1:] = num / den
    return out


def plot_backtest(result: BacktestResult, path: str | Path, zoom_minutes: int = 240) -> Path:
    """Write a PNG: the last ``zoom_minutes`` of price, forecast and interval band; the
    rolling one-day MAE ratio to persistence over the whole run; the rolling one-day coverage;
    and, when the series carries the forecaster's internals, the model panel: forecast minus
    last close in basis points and the guard weight over time. No axis uses offset notation.

    Raises
    ------
    ValueError
        If the result carries no per-minute series.
    """
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    s = result.series
    if s is None or len(s.actual) == 0:
        raise ValueError("the backtest result has no per-minute series to plot")
    times = s.time_ms.astype("datetime64[ms]")
    panel = s.guard_weight is not None
    fig, axes = plt.subplots(4 if panel else 3, 1, figsize=(11, 11.5 if panel else 9),
                             gridspec_kw={"height_ratios": [3, 2, 1.4, 2][: 4 if panel else 3]})
    z = slice(max(0, len(times) - zoom_minutes), len(times))
    ax = axes[0]
    ax.fill_between(times[z], s.lower[z], s.upper[z], step="mid", alpha=0.25, color="tab:blue",
                    label=f"{result.interval_level:.0%} interval")
    ax.plot(times[z], s.actual[z], color="black", lw=1.0, label="realised close")
    ax.plot(times[z], s.pred[z], color="tab:red", lw=0.9, label="forecast")
    ax.plot(times[z], s.last[z], color="tab:gray", lw=0.7, ls=":", label="persistence (last close)")
    ax.set_title(f"{result.source}{f' [{result.symbol}]' if result.symbol else ''}, model {result.model}: last {zoom_minutes} scored minutes")
    ax.set_ylabel("price (USD)")
    ax.legend(loc="upper left", fontsize=8)
    step = max(1, len(times) // 4000)
    ratio = rolling_mae_ratio(s)
    axes[1].plot(times[::step], ratio[::step], color="tab:red", lw=0.9, label="model / persistence")
    axes[1].axhline(1.0, color="black", lw=0.8, ls="--")
    axes[1].set_ylabel("rolling 1-day MAE ratio")
    axes[1].set_title(f"whole run: MAE ratio {result.model_scores['mae_ratio']:.5f}")
    axes[1].legend(loc="upper left", fontsize=8)
    inside = ((s.lower <= s.actual) & (s.actual <= s.upper)).astype(float)
    cov = np.full(len(inside), np.nan)
    if len(inside) >= ROLLING_MINUTES:
        c = np.cumsum(np.r_[0.0, inside])
        cov[ROLLING_MINUTES - 1:] = (c[ROLLING_MINUTES:] - c[:-ROLLING_MINUTES]) / ROLLING_MINUTES
    axes[2].plot(times[::step], cov[::step], color="tab:blue", lw=0.9)
    axes[2].axhline(result.interval_level, color="black", lw=0.8, ls="--")
    axes[2].set_ylabel("rolling 1-day coverage")
    if panel:
        ax = axes[3]
        ax.plot(times[::step], (1e4 * (s.pred / s.last - 1.0))[::step], color="tab:red", lw=0.5,
                label="forecast - last close (bp)")
        ax.axhline(0.0, color="black", lw=0.6)
        ax.set_ylabel("forecast - last (bp)")
        twin = ax.twinx()
        twin.plot(times[::step], s.guard_weight[::step], color="tab:green", lw=0.9, label="guard weight")
        twin.set_ylim(0.0, 1.0)
        twin.set_ylabel("guard weight")
        ax.legend(loc="upper left", fontsize=8)
        twin.legend(loc="upper right", fontsize=8)
        twin.ticklabel_format(axis="y", useOffset=False, style="plain")
    for ax in axes:
        ax.ticklabel_format(axis="y", useOffset=False, style="plain")
    fig.tight_layout()
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=80)
    plt.close(fig)
    return path
