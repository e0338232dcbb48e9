"""The ``promote_model`` use case: validate a new candidate and promote it only if it earned it.

For a candidate ``<key>/candidates/<version>/`` (its ``metadata.json`` was just
created, which is what fires the blob trigger), :meth:`PromotionService.handle`

1. reads the champion pointer of ``key`` with its ETag (the compare-and-swap base);
2. loads the candidate through the registry, which checks size and sha256 against
   the metadata *before* unpickling (a corrupt, truncated or tampered blob is refused
   without executing it);
3. runs a smoke prediction on a fixed synthetic bar series: finite, within ±5 % of
   the last close, ``lower <= forecast <= upper``, and one learn step that keeps it so;
4. compares the holdout scores written by ``retrain``: promote when there is no champion
   serving the symbol, or when the challenger beats the champion (still the one serving)
   by the stated margin -- see "The margin" below;
5. writes ``<key>/current.json`` under the ETag of step 1 (If-Match, or If-None-Match
   when there was no pointer), so of two promotions racing on one pointer exactly one
   wins and the other is refused as a lost race;
6. records the decision — promoted or refused, with its reason and figures — under
   ``<key>/decisions/`` (list them with :meth:`shared.lifecycle.registry.ModelRegistry.decisions`).

A promotion is announced as a :class:`shared.contracts.events.ModelChange` on the predictions hub.

The margin
----------
A lower holdout MAE on a few minutes is noise: issue 16 saw a challenger promoted for
0.002 USD over 10 minutes that then ran at a live MAE ratio of 1.0015. So a challenger
replaces a champion only when

- the paired comparison ``holdout.comparison`` (retrain's Diebold-Mariano test of the
  challenger's against the champion's absolute errors on the same minutes, Newey-West
  variance with the Harvey-Leybourne-Newbold correction, :mod:`shared.forecast.comparison`)
  rests on at least :data:`MIN_HOLDOUT_MINUTES` minutes, and
- it rejects equal accuracy in the challenger's favour at the one-sided level
  :data:`PROMOTION_ALPHA` (5 %, the conventional level: ``p_better <= 0.05``).

The statistic, its p and the number of minutes go into the decision record
(``test_statistic``, ``p_value``, ``holdout_minutes``). Otherwise the champion stays and keeps
learning online; a challenger is worth the swap only when the evidence says so.
"""

from __future__ import annotations

import copy
import logging
import math
import re
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass
from typing import Any

from azure.core.exceptions import AzureError

from shared.stream.bars import MINUTE_MS
from shared.contracts.events import Bar, ModelChange
from shared.forecast.prequential import PrequentialStepper
from shared.lifecycle.registry import ModelRegistry, PointerConflictError, RegistryError, validate_key

log = logging.getLogger(__name__)

MIN_HOLDOUT_MINUTES = 60
"""Fewest paired holdout minutes a replacement may rest on: one hour, the shortest span over
which one-minute errors average over more than a few volatility bursts (and the Newey-West
variance has 2+ lags); the default holdout (``RETRAIN_HOLDOUT_MINUTES``) is 6 hours."""
PROMOTION_ALPHA = 0.05
"""One-sided level of the test a challenger must pass to replace a champion."""
MAX_FORECAST_MOVE = 0.05
"""A smoke forecast further than this fraction from the last close fails (the forecaster's own bound)."""

_CANDIDATE = re.compile(r"(?:^|/)([A-Za-z0-9._-]+)/candidates/([A-Za-z0-9._-]+)/metadata\.json$")


class SmokeTestError(Exception):
    """A candidate loaded but did not produce a sane forecast."""


def parse_candidate_blob(name: str) -> tuple[str, str]:
    """``(key, version)`` of a candidate's ``metadata.json`` blob name (with or without the container).

    Raises
    ------
    ValueError
        Not a candidate metadata blob name.

    Examples
    --------
    >>> parse_candidate_blob("models/binance.BTCUSDT/candidates/20261122T220000000Z-1a2b3c4d/metadata.json")
    ('binance.BTCUSDT', '20261122T220000000Z-1a2b3c4d')
    """
    m = _CANDIDATE.search(name)
    if m is None:
        raise ValueError(f"{name!r} is not <key>/candidates/<version>/metadata.json")
    return validate_key(m.group(1)), validate_key(m.group(2), "model version")


def smoke_bars(n: int = 40, start_ms: int = 1_700_000_000_000 - 1_700_000_000_000 % MINUTE_MS) -> list[Bar]:
    """A deterministic series of ``n`` one-minute bars around 30,000 USD (a gentle zig-zag)."""
    bars = []
    close = 30_000.0
    for i in range(n):
        move = (1 if i % 3 else -1) * 3.0 * (1 + i % 5)
        open_, close = close, close + move
        bars.append(Bar("smoke", "TEST", start_ms + i * MINUTE_MS, open_, max(open_, close) + 2.0,
                        min(open_, close) - 2.0, close, 1.0 + i % 7, 10 + i))
    return bars


def smoke_test(model: Any, bars: Sequence[Bar] | None = None) -> float:
    """Predict with a copy of ``model`` on ``bars`` (:func:`smoke_bars`), learn one step, predict again.

    The copy steps through the bars as served (:class:`shared.forecast.prequential.PrequentialStepper`:
    forecast, then learn the realised label), and every forecast is checked.

    Parameters
    ----------
    model : has ``predict_price`` and ``learn`` (left untouched: a deep copy is tested).
    bars : one symbol's completed bars, ascending (default :func:`smoke_bars`).

    Returns
    -------
    float
        The last smoke forecast, USD.

    Raises
    ------
    SmokeTestError
        The model lacks ``predict_price``/``learn``, raises, or returns a forecast that is
        not finite, outside ±5 % of the last close, or outside its own interval.
    """
    model = copy.deepcopy(model)
    for method in ("predict_price", "learn"):
        if not callable(getattr(model, method, None)):
            raise SmokeTestError(f"{type(model).__name__} has no {method}()")
    stepper = PrequentialStepper(model)
    forecast = math.nan
    try:
        for bar in smoke_bars() if bars is None else bars:
            stepper.step(bar)
            made = stepper.pending
            if made is None:
                continue
            forecast, lower, upper = values = made.predicted, made.lower, made.upper
            if not all(isinstance(v, float) and math.isfinite(v) for v in values):
                raise SmokeTestError(f"non-finite forecast {values}")
            if abs(forecast / bar.close - 1) > MAX_FORECAST_MOVE:
                raise SmokeTestError(f"forecast {forecast:.2f} is more than 5 % from the last close {bar.close:.2f}")
            if not lower <= forecast <= upper:
                raise SmokeTestError(f"forecast {forecast:.2f} outside its interval [{lower:.2f}, {upper:.2f}]")
    except SmokeTestError:
        raise
    except Exception as exc:  # anything a broken model raises is a failed smoke test
        raise SmokeTestError(f"{type(exc).__name__}: {exc}") from exc
    return forecast


@dataclass(frozen=True)
class PromotionDecision:
    """One decision about one candidate.

    Attributes
    ----------
    key, version : the candidate.
    promoted : whether ``current.json`` now points at it.
    reason : why, in one sentence with the figures.
    decided_at_ms : when, ms since epoch UTC.
    champion_key, champion_version : the champion serving the symbol before the decision (or ``None``).
    challenger_mae_usd, champion_mae_usd, persistence_mae_usd : holdout MAE in USD, when known.
    test_statistic, p_value, holdout_minutes : the paired comparison against the champion
        (Harvey-Leybourne-Newbold corrected Diebold-Mariano statistic, negative = challenger
        better; its one-sided p; paired minutes), when one was made.
    """

    key: str
    version: str
    promoted: bool
    reason: str
    decided_at_ms: int
    champion_key: str | None = None
    champion_version: str | None = None
    challenger_mae_usd: float | None = None
    champion_mae_usd: float | None = None
    persistence_mae_usd: float | None = None
    test_statistic: float | None = None
    p_value: float | None = None
    holdout_minutes: int | None = None

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready dict of the fields."""
        return asdict(self)

    def model_change(self) -> ModelChange:
        """The event announcing this promotion.

        Raises
        ------
        ValueError
            The candidate was not promoted.
        """
        if not self.promoted:
            raise ValueError(f"{self.key}/{self.version} was not promoted")
        return ModelChange(self.key, self.version, self.champion_version or "none", self.decided_at_ms, self.reason)


def _mae(block: Any) -> float | None:
    value = block.get("mae_usd") if isinstance(block, dict) else None
    return float(value) if isinstance(value, (int, float)) and math.isfinite(value) else None


class PromotionService:
    """Validates candidates and moves champion pointers (steps 1-6 of the module docstring).

    Parameters
    ----------
    registry : the model registry.
    fallback_key : key whose champion serves symbols without one of their own (``MODEL_KEY``).
    clock : wall clock, ms since epoch UTC.
    """

    def __init__(
        self,
        registry: ModelRegistry,
        fallback_key: str = "default",
        clock: Callable[[], int] = lambda: time.time_ns() // 1_000_000,
    ) -> None:
        self.registry = registry
        self.fallback_key = fallback_key
        self.clock = clock

    def handle(self, key: str, version: str) -> PromotionDecision:
        """Decide about candidate ``key``/``version``, record the decision and return it.

        Never raises for a bad candidate (that is a refusal); registry outages propagate
        (``azure.core.exceptions.AzureError``) so the trigger retries.
        """
        decision = self._decide(key, version)
        self.registry.record_decision(key, version, decision.to_dict())
        (log.info if decision.promoted else log.warning)(
            "promote_model %s/%s: %s: %s", key, version, "promoted" if decision.promoted else "refused",
            decision.reason,
        )
        return decision

    def _decide(self, key: str, version: str) -> PromotionDecision:
        now = self.clock
        # 1. the pointer we may replace, and the champion serving the symbol now
        own = self.registry.current(key)
        if own is not None and own[0] == version:
            return PromotionDecision(key, version, False, "already the champion", now(), key, version)
        champion = (key, own[0]) if own is not None else None
        if champion is None and key != self.fallback_key:
            fallback = self.registry.current(self.fallback_key)
            champion = (self.fallback_key, fallback[0]) if fallback is not None else None
        refuse = lambda reason, **kw: PromotionDecision(
            key, version, False, reason, now(), *(champion or (None, None)), **kw
        )
        # 2. integrity before unpickling (the registry checks size and sha256 first)
        try:
            model, meta = self.registry.load(key, version)
        except RegistryError as exc:
            return refuse(f"refused before unpickling: {exc}")
        except AzureError:
            raise
        except Exception as exc:  # bytes matched the metadata but do not unpickle here
            return refuse(f"does not load: {type(exc).__name__}: {exc}")
        # 3. smoke prediction
        try:
            smoke_test(model)
        except SmokeTestError as exc:
            return refuse(f"smoke prediction failed: {exc}")
        # 4. holdout comparison
        holdout = meta.extra.get("holdout") if isinstance(meta.extra, dict) else None
        if not isinstance(holdout, dict):
            return refuse("metadata has no holdout scores")
        challenger_mae = _mae(holdout.get("challenger"))
        persistence_mae = _mae(holdout.get("persistence"))
        if challenger_mae is None:
            return refuse("metadata has no challenger holdout MAE", persistence_mae_usd=persistence_mae)
        scored = holdout.get("champion") if isinstance(holdout.get("champion"), dict) else None
        champion_mae = _mae(scored)
        figures = dict(challenger_mae_usd=challenger_mae, champion_mae_usd=champion_mae,
                       persistence_mae_usd=persistence_mae)
        if champion is not None:
            if scored is None or (scored.get("key"), scored.get("version")) != champion:
                evaluated = None if scored is None else f"{scored.get('key')}/{scored.get('version')}"
                return refuse(
                    f"champion changed since the holdout evaluation (evaluated against {evaluated}, "
                    f"serving now {champion[0]}/{champion[1]})", **figures,
                )
            if champion_mae is None:
                return refuse("metadata has no champion holdout MAE", **figures)
            if challenger_mae > champion_mae:
                return refuse(
                    f"worse than the champion on the holdout: MAE {challenger_mae:.4f} > {champion_mae:.4f} USD",
                    **figures,
                )
            test = holdout.get("comparison")
            if not isinstance(test, dict) or not all(
                isinstance(test.get(k), (int, float)) for k in ("n", "statistic_hln", "p_better")
            ):
                return refuse("metadata has no paired comparison with the champion (retrain again)", **figures)
            figures |= dict(test_statistic=float(test["statistic_hln"]), p_value=float(test["p_better"]),
                            holdout_minutes=int(test["n"]))
            evidence = (f"DM {test['statistic_hln']:+.2f}, one-sided p {test['p_better']:.3f} over "
                        f"{int(test['n'])} paired minutes")
            if test["n"] < MIN_HOLDOUT_MINUTES:
                return refuse(f"too few holdout minutes to judge: {int(test['n'])} < {MIN_HOLDOUT_MINUTES} "
                              f"(MAE {challenger_mae:.4f} vs {champion_mae:.4f} USD)", **figures)
            if not test["p_better"] <= PROMOTION_ALPHA:
                return refuse(f"not better than the champion by the margin (p <= {PROMOTION_ALPHA}): {evidence}; "
                              f"MAE {challenger_mae:.4f} vs {champion_mae:.4f} USD", **figures)
            reason = (f"holdout MAE {challenger_mae:.4f} < champion {champion[1]} {champion_mae:.4f} USD, "
                      f"{evidence}")
        else:
            reason = f"no champion; holdout MAE {challenger_mae:.4f} USD"
        if persistence_mae is not None:
            reason += f" (persistence {persistence_mae:.4f})"
        # 5. compare-and-swap the pointer
        try:
            self.registry.set_current(key, version, if_match_etag=own[1] if own is not None else None)
        except PointerConflictError as exc:
            return refuse(f"lost the race: {exc}", **figures)
        return PromotionDecision(key, version, True, reason, now(), *(champion or (None, None)), **figures)
