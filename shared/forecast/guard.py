"""Guard against doing worse than persistence: a forgetting online weighting of the model against zero return.

The forecast actually served is ``p_t * m_t``, where ``m_t`` is the model's predicted
log return and ``p_t`` in (0, 1) is the weight of the *model expert* in an exponentially
weighted average forecaster over two experts, the model and the zero-return forecast
(persistence: next close = last close).

Losses are in units of the forecaster's volatility scale ``sigma_t`` (dimensionless):
``l_model = |r_t - m_t| / sigma_t`` and ``l_zero = |r_t| / sigma_t``. Their difference is
bounded by ``B_t = |m_t| / sigma_t`` (``| |r - m| - |r| | <= |m|``), and the model's output is
clipped to ``MAX_ABS_Z`` standard units, so **one minute can move the guard by a bounded
amount whatever the price did** (a bad print, a crash): in quote-currency or raw-return
units one storm minute outweighs a week of calm ones.

Weights: Fixed-Share (M. Herbster and M. K. Warmuth, "Tracking the best expert", Machine
Learning 32, 1998), i.e. the exponentially weighted average forecaster ("Hedge",
N. Cesa-Bianchi and G. Lugosi, *Prediction, Learning, and Games*, 2006, §2.1-2.3) followed
by sharing a fraction ``alpha`` of the weight equally between the experts:

    v_i = w_i exp(-eta_t l_i) / sum_j w_j exp(-eta_t l_j),    w_i <- (1 - alpha) v_i + alpha / 2.

It competes with the best *sequence* of experts with few switches, so it forgets: the
weight never falls below ``alpha / 2`` and recovers from a bad stretch in a time that does
not grow with the length of the history (Hedge's cumulative losses never forget: one shock
switched the old guard off for good). ``alpha = 1 / TRACKING_MINUTES`` (one switch per week,
Herbster & Warmuth's tuning ``alpha = k / (T - 1)`` with ``k = 1`` switch in ``T`` = one week
of minutes, the horizon the linear family also tracks).

Learning rate: Hoeffding's lemma per step gives ``eta = sqrt(8 ln N / sum_t B_t^2)`` for
losses ranging over intervals of widths ``B_t`` (Cesa-Bianchi & Lugosi, Theorem 2.2 and its
range-adaptive form); the sum is taken over the same one-week horizon, as an exponentially
discounted sum ``S_t = gamma S_{t-1} + B_t^2`` with ``gamma = 1 - 1 / TRACKING_MINUTES``, so
``eta`` neither vanishes over a long history nor reacts to one minute.

Examples
--------
>>> g = ZeroReturnGuard()
>>> g.weight
0.5
>>> for _ in range(2000):  # the model keeps forecasting +0.05 sigma on minutes that move -1 sigma
...     g.update(5e-5, -1e-3, 1e-3)
>>> g.weight < 1e-3
True
>>> for _ in range(2000):  # ... then the right sign: the weight comes back
...     g.update(5e-5, 1e-3, 1e-3)
>>> g.weight > 0.99
True
"""

from __future__ import annotations

import math

TRACKING_MINUTES = 10_080
"""Horizon of the guard's memory (one week of one-minute bars): ``alpha = 1 / T``, ``gamma = 1 - 1 / T``."""
SHARE = 1.0 / TRACKING_MINUTES
"""Fixed-Share's ``alpha``: one expected switch between model and persistence per week."""
DISCOUNT = 1.0 - 1.0 / TRACKING_MINUTES
"""Discount of the summed squared ranges that set the learning rate."""
_LN2_8 = 8.0 * math.log(2.0)
_MAX_EXPONENT = 700.0  # math.exp overflows beyond ~709


class ZeroReturnGuard:
    """Online weight ``p`` in (0, 1) of a model's forecast against the zero-return forecast.

    Attributes
    ----------
    weight : float
        Current weight ``p`` of the model (0.5 before anything was learned), in
        ``[SHARE / 2, 1 - SHARE / 2]`` after the first update.
    range_sq : float
        Discounted ``sum (m_t / sigma_t)^2``, the squared ranges of the loss differences
        (dimensionless; sets the learning rate).
    excess_loss : float
        Summed ``l_model - l_zero`` in sigma units since creation (negative = the model has
        been better); a monitoring figure, not used by the weights.

    Notes
    -----
    Guards pickled before losses were in sigma units (attributes ``excess_loss``,
    ``range_sq`` in raw log-return units and ``weight``) load with their weight kept and
    the other two reset.
    """

    __slots__ = ("excess_loss", "range_sq", "weight", "units")

    def __init__(self) -> None:
        self.excess_loss = 0.0
        self.range_sq = 0.0
        self.weight = 0.5
        self.units = "sigma"

    def __getstate__(self) -> dict:
        return {name: getattr(self, name) for name in self.__slots__}

    def __setstate__(self, state: dict) -> None:
        if state.get("units") != "sigma":  # a guard of before Fixed-Share: raw-unit sums mean nothing now
            state = {"weight": state.get("weight", 0.5), "excess_loss": 0.0, "range_sq": 0.0, "units": "sigma"}
        for name, value in state.items():
            setattr(self, name, value)

    def forecast(self, model_return: float) -> float:
        """The served log return: ``weight * model_return``."""
        return self.weight * model_return

    def update(self, model_return: float, realised_return: float, sigma: float = 1.0) -> None:
        """Score both experts on a realised log return, in units of ``sigma``, and reweight.

        Parameters
        ----------
        model_return : the model's forecast ``m_t`` (log return) made before ``realised_return``.
        realised_return : ``r_t = ln(close_t / close_{t-1})``.
        sigma : the volatility scale (log return per minute, > 0) the forecast was made with.

        Raises
        ------
        ValueError
            If a value is not finite or ``sigma`` is not > 0.
        """
        if not (math.isfinite(model_return) and math.isfinite(realised_return) and 0.0 < sigma < math.inf):
            raise ValueError(f"guard needs finite returns and sigma > 0, got {model_return!r}, "
                             f"{realised_return!r}, {sigma!r}")
        m, r = model_return / sigma, realised_return / sigma
        diff = abs(r - m) - abs(r)
        self.excess_loss += diff
        self.range_sq = DISCOUNT * self.range_sq + m * m
        if self.range_sq <= 0.0:
            return
        exponent = math.sqrt(_LN2_8 / self.range_sq) * diff
        exponent = max(-_MAX_EXPONENT, min(_MAX_EXPONENT, exponent))
        w = self.weight
        v = w / (w + (1.0 - w) * math.exp(exponent))  # Hedge step: w e^{-eta l_m} / (w e^{-eta l_m} + (1-w) e^{-eta l_0})
        self.weight = (1.0 - SHARE) * v + 0.5 * SHARE
