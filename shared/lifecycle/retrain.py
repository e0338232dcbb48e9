"""The ``retrain`` use case: history in, a challenger candidate with holdout scores out.

For each model key (one per symbol, :func:`shared.lifecycle.registry.symbol_key`) the timer

1. reads the bars of the last ``RETRAIN_LOOKBACK_DAYS`` before the symbol's newest
   stored bar from the history store (live, that is "until the last minute");
2. with fewer than ``RETRAIN_MIN_BARS`` bars, stops there: no blob, one log line;
3. splits off the newest ``RETRAIN_HOLDOUT_MINUTES`` as the holdout window;
4. trains a challenger prequentially on the older bars (predict, then learn). When a
   champion of the configured model family serves the symbol, the challenger starts
   as a copy of it (warm start): a retrain then adds the recent window to what the
   champion learned before, instead of discarding everything older than the
   lookback. Otherwise it starts fresh;
5. scores challenger, the champion serving the symbol now (its own key's, else the
   fallback key's) and persistence on the holdout, each prequentially from a copy
   whose features were warmed on the training bars — so all three are judged on
   the same minutes and none has seen a holdout label before forecasting it — and
   compares challenger and champion minute by minute (``holdout.comparison``: the
   Diebold-Mariano test of :func:`compare`, on which promotion decides);
6. saves the challenger, which by then has also learned the holdout online, as a
   candidate ``<key>/candidates/<version>/`` whose metadata carries the three
   scores, the training range, row counts, features and library versions (the
   registry adds the sha256).

The candidate's creation is what triggers ``promote_model`` (see
:mod:`shared.lifecycle.promotion`), which decides on the scores written here.
"""

from __future__ import annotations

import copy
import logging
import math
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

from shared.stream.bars import MINUTE_MS
from shared.contracts.events import Bar
from shared.stream.features import FEATURE_NAMES
from shared.forecast.comparison import paired_test
from shared.forecast.forecaster import ReturnForecaster
from shared.forecast.prequential import PrequentialStepper
from shared.storage.history import HistoryStore
from shared.lifecycle.registry import ModelRegistry, symbol_key

log = logging.getLogger(__name__)

DAY_MS = 86_400_000


@dataclass(frozen=True)
class HoldoutScore:
    """Prequential one-minute-ahead errors of one forecaster on a holdout window.

    Attributes
    ----------
    n : number of scored forecasts (holdout minutes whose previous minute had a bar).
    mae_usd, rmse_usd : mean absolute and root-mean-square error of the forecast close, USD
        (quote currency).
    coverage : share of realised closes inside the prediction interval, or ``None``
        for persistence (no interval).
    errors : ``{target minute (ms since epoch UTC): absolute error (USD)}`` of each scored
        forecast, for the paired comparison of :func:`compare`; not written to metadata.
    """

    n: int
    mae_usd: float
    rmse_usd: float
    coverage: float | None
    errors: dict[int, float] = field(default_factory=dict, repr=False, compare=False)

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready dict of the fields but ``errors``."""
        return {"n": self.n, "mae_usd": self.mae_usd, "rmse_usd": self.rmse_usd, "coverage": self.coverage}


def _score(abs_errors: list[float], hits: list[bool] | None, times: list[int] | None = None) -> HoldoutScore:
    n = len(abs_errors)
    if n == 0:
        return HoldoutScore(0, math.nan, math.nan, None)
    return HoldoutScore(
        n,
        sum(abs_errors) / n,
        math.sqrt(sum(e * e for e in abs_errors) / n),
        None if hits is None else sum(hits) / n,
        dict(zip(times, abs_errors)) if times is not None else {},
    )


def compare(challenger: HoldoutScore, champion: HoldoutScore) -> dict[str, Any] | None:
    """Paired Diebold-Mariano comparison of the two on their common holdout minutes
    (:func:`shared.forecast.comparison.paired_test`, challenger first: negative = challenger better),
    as a JSON-ready dict; ``None`` with fewer than 2 common minutes."""
    common = sorted(set(challenger.errors) & set(champion.errors))
    if len(common) < 2:
        return None
    return paired_test([challenger.errors[t] for t in common], [champion.errors[t] for t in common]).to_dict()


class Prequential(PrequentialStepper):
    """Streams bars through features and a forecaster with the engine's semantics.

    At each bar close the forecaster learns the realised log return of the forecast
    made one bar earlier (only when that bar is the next minute: gaps are not
    learned), then forecasts the next close: the one rule of
    :class:`shared.forecast.prequential.PrequentialStepper` (A. P. Dawid, "Statistical
    theory: the prequential approach", JRSS A 147, 1984). State carries over between
    :meth:`feed` calls, so a training pass and a holdout pass form one stream.

    Parameters
    ----------
    forecaster : has ``predict_price(x, last_close) -> (close, lower, upper)`` in USD and
        ``learn(x, r)`` with ``r`` the realised log return; updated in place.
    features : feature state to continue from (default: a fresh :class:`shared.stream.features.BarFeatures`).
    """

    __slots__ = ()

    def feed(self, bars: Iterable[Bar], *, learn: bool = True, predict: bool = True,
             score: bool = False) -> HoldoutScore | None:
        """Process completed bars of one symbol, oldest first.

        Parameters
        ----------
        learn : teach the forecaster each realised label (predict, then learn).
        predict : forecast at each bar close (``False``: only advance the features).
        score : return the errors of this call's forecasts whose target bar arrived
            in this call (including the forecast pending from the previous call).

        Returns
        -------
        HoldoutScore or None
            ``None`` unless ``score``.
        """
        errors: list[float] = []
        hits: list[bool] = []
        times: list[int] = []
        step = self.step
        for bar in bars:
            done = step(bar, learn, predict)
            if done is not None and score:
                close = bar.close
                errors.append(abs(done.predicted - close))
                hits.append(done.lower <= close <= done.upper)
                times.append(bar.open_time_ms)
        return _score(errors, hits, times) if score else None


def persistence_score(bars: Sequence[Bar]) -> HoldoutScore:
    """Errors of the persistence baseline (next close = last close) over consecutive minutes of ``bars``."""
    errors = [
        abs(b.close - a.close) for a, b in zip(bars, bars[1:]) if b.open_time_ms == a.open_time_ms + MINUTE_MS
    ]
    return _score(errors, None)


def score_on_holdout(forecaster: Any, training: Sequence[Bar], holdout: Sequence[Bar]) -> HoldoutScore:
    """Score a *copy* of ``forecaster`` prequentially on ``holdout``, features warmed on ``training``.

    The copy forecasts (and then learns) every holdout minute, starting with the
    one after the last training bar; ``forecaster`` itself is left untouched.
    """
    run = Prequential(copy.deepcopy(forecaster))
    run.feed(training[:-1], learn=False, predict=False)
    run.feed(training[-1:], learn=False)
    return run.feed(holdout, score=True)  # type: ignore[return-value]


@dataclass(frozen=True)
class RetrainOutcome:
    """What the timer did for one model key.

    ``status`` is ``"candidate"`` (a challenger was saved as ``version``) or
    ``"skipped"`` (``reason`` says why, e.g. too little data).
    """

    key: str
    exchange: str
    symbol: str
    status: str
    reason: str
    version: str | None = None
    extra: dict[str, Any] | None = None

    def describe(self) -> str:
        """One log line."""
        if self.status != "candidate":
            return f"retrain {self.key}: no candidate: {self.reason}"
        return f"retrain {self.key}: candidate {self.version}: {self.reason}"


class RetrainService:
    """Train and store challengers for a set of symbols from the history store.

    Parameters
    ----------
    history : bar history (MySQL or SQLite).
    registry : model registry the candidates are written to.
    symbols : ``(exchange, symbol)`` pairs to retrain (``SYMBOLS``); empty = every
        symbol the history holds.
    fallback_key : key whose champion serves symbols without one of their own (``MODEL_KEY``).
    lookback_days, holdout_minutes, min_bars : ``RETRAIN_LOOKBACK_DAYS``,
        ``RETRAIN_HOLDOUT_MINUTES``, ``RETRAIN_MIN_BARS``.
    new_forecaster : builds a fresh challenger (default: the default family at 90 %).
    clock : wall clock, ms since epoch UTC.
    """

    def __init__(
        self,
        history: HistoryStore,
        registry: ModelRegistry,
        symbols: Sequence[tuple[str, str]] = (),
        *,
        fallback_key: str = "default",
        lookback_days: float = 7,
        holdout_minutes: int = 360,
        min_bars: int = 1000,
        new_forecaster: Callable[[], Any] = ReturnForecaster,
        clock: Callable[[], int] = lambda: time.time_ns() // 1_000_000,
    ) -> None:
        if holdout_minutes < 1:
            raise ValueError(f"holdout_minutes must be >= 1, got {holdout_minutes}")
        self.history = history
        self.registry = registry
        self.symbols = tuple(symbols)
        self.fallback_key = fallback_key
        self.lookback_days = lookback_days
        self.holdout_minutes = holdout_minutes
        self.min_bars = max(min_bars, holdout_minutes + 3)
        self.new_forecaster = new_forecaster
        self.clock = clock

    def run(self) -> list[RetrainOutcome]:
        """Retrain every configured symbol; one outcome per symbol (errors are outcomes too)."""
        wanted = self.symbols or tuple(self.history.symbols())
        outcomes = []
        for exchange, symbol in wanted:
            try:
                outcome = self.retrain(exchange, symbol)
            except Exception as exc:  # one symbol's failure must not stop the others
                log.exception("retrain of %s %s failed", exchange, symbol)
                outcome = RetrainOutcome(symbol_key(exchange, symbol), exchange, symbol, "failed", repr(exc))
            log.info(outcome.describe())
            outcomes.append(outcome)
        return outcomes

    def _champion(self, key: str) -> tuple[str, str] | None:
        for candidate_key in dict.fromkeys((key, self.fallback_key)):
            current = self.registry.current(candidate_key)
            if current is not None:
                return candidate_key, current[0]
        return None

    def retrain(self, exchange: str, symbol: str) -> RetrainOutcome:
        """Train, score and store one challenger for ``(exchange, symbol)`` (steps 1-6 of the module doc).

        Raises
        ------
        sqlalchemy.exc.SQLAlchemyError, azure.core.exceptions.AzureError, RegistryError
            History or registry unreachable.
        """
        key = symbol_key(exchange, symbol)
        now = self.clock()
        newest = self.history.latest_bars(exchange, symbol, 1)
        # The window ends at the newest stored bar (live, that is the last minute; for a replay of
        # recorded trades, the replay's own time) and never after the current minute.
        end = min(now - now % MINUTE_MS, newest[0].open_time_ms + MINUTE_MS) if newest else now
        bars = self.history.bars(exchange, symbol, start_ms=end - int(self.lookback_days * DAY_MS), end_ms=end)
        if len(bars) < self.min_bars:
            return RetrainOutcome(
                key, exchange, symbol, "skipped",
                f"too little data: {len(bars)} bars in the last {self.lookback_days:g} days, need {self.min_bars}",
            )
        training, holdout = bars[: -self.holdout_minutes], bars[-self.holdout_minutes :]

        t0 = time.perf_counter()
        champion = self._champion(key)
        champion_model = champion_score = None
        if champion is not None:
            champion_model, _ = self.registry.load(*champion)
            champion_score = score_on_holdout(champion_model, training, holdout)
        challenger = self.new_forecaster()
        warm_from = None
        if type(champion_model) is type(challenger) and getattr(champion_model, "name", None) == getattr(
            challenger, "name", None
        ):
            # Warm start: continue the champion's learning over the window (same family and level).
            if getattr(champion_model, "interval_level", None) == getattr(challenger, "interval_level", None):
                challenger, warm_from = copy.deepcopy(champion_model), champion[1]  # type: ignore[index]
        run = Prequential(challenger)
        run.feed(training)
        persistence = persistence_score([training[-1], *holdout])
        # The challenger's own score, then its online learning of the holdout, in one pass.
        challenger_score = run.feed(holdout, score=True)
        warm_text = f"warm start from {warm_from}" if warm_from else "fresh model"
        assert challenger_score is not None
        seconds = time.perf_counter() - t0

        def finite(score: HoldoutScore | None) -> dict[str, Any] | None:
            if score is None:
                return None
            return {k: (None if isinstance(v, float) and not math.isfinite(v) else v) for k, v in score.to_dict().items()}

        extra = {
            "exchange": exchange,
            "symbol": symbol,
            "model": getattr(challenger, "name", type(challenger).__name__),
            "interval_level": getattr(challenger, "interval_level", None),
            "rows": len(bars),
            "training_rows": len(training),
            "holdout_rows": len(holdout),
            "lookback_days": self.lookback_days,
            "warm_start_from": warm_from,
            "train_seconds": round(seconds, 3),
            "holdout": {
                "start_ms": holdout[0].open_time_ms,
                "end_ms": holdout[-1].open_time_ms,
                "challenger": finite(challenger_score),
                "champion": None if champion is None else {"key": champion[0], "version": champion[1],
                                                            **(finite(champion_score) or {})},
                "persistence": finite(persistence),
                "comparison": None if champion_score is None else compare(challenger_score, champion_score),
            },
        }
        meta = self.registry.save(
            key,
            challenger,
            training_start_ms=bars[0].open_time_ms,
            training_end_ms=bars[-1].open_time_ms,
            feature_names=list(FEATURE_NAMES),
            extra=extra,
        )
        champ_text = (
            "no champion" if champion_score is None
            else f"champion {champion[1]} MAE {champion_score.mae_usd:.3f}"  # type: ignore[index]
        )
        reason = (
            f"{warm_text}, {len(training)} training + {len(holdout)} holdout bars; holdout MAE challenger "
            f"{challenger_score.mae_usd:.3f} USD, {champ_text}, persistence {persistence.mae_usd:.3f}"
        )
        return RetrainOutcome(key, exchange, symbol, "candidate", reason, meta.version, extra)
