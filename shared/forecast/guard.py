"""Guard against doing worse than persistence: an online weighting of the model against zero return.

The forecast actually served is ``p_t * m_t``, where ``m_t`` is the model's predicted
log return and ``p_t`` in (0, 1) is the weight of the *model expert* in an exponentially
weighted average forecaster over two experts, the model and the zero-return forecast
(persistence: next close = last close). Both experts are scored on the absolute error of
the log return, which is the per-minute MAE in quote currency divided by the last close.

Weights follow the exponentially weighted average forecaster ("Hedge") of N. Cesa-Bianchi
and G. Lugosi, *Prediction, Learning, and Games* (2006), §2.1-2.3: with cumulative losses
``L_model`` and ``L_zero``, ``p = 1 / (1 + exp(eta * (L_model - L_zero)))``. The absolute
loss is convex in the forecast, so the mixture's loss is at most the weighted loss of the
experts, and the regret to the better expert is ``O(sqrt(sum_t B_t^2 ln 2))``
(their Theorem 2.2 with Hoeffding's lemma per step). ``B_t = |m_t|`` bounds how far the two
experts' losses can differ at step t (``| |r - m| - |r| | <= |m|``), so the learning rate
is set from the data seen, without a horizon or a tuned constant:
``eta_t = sqrt(8 ln 2 / sum_{s<=t} B_s^2)`` (the anytime, range-adaptive form of
``eta = sqrt(8 ln N / T)`` for losses in a range of width 1).

So over any stretch the served forecast is never worse than persistence by more than
about ``sqrt(ln 2 / 2 * sum m_t^2)`` in summed absolute log-return error -- a quantity that
grows like ``sqrt(T)`` while the errors themselves grow like ``T``.

Examples
--------
>>> g = ZeroReturnGuard()
>>> g.weight
0.5
>>> for _ in range(200):  # the model keeps forecasting +1 bp on minutes that move -3 bp
...     g.update(1e-4, -3e-4)
>>> g.weight < 1e-6
True
"""

from __future__ import annotations

import math

_LN2_8 = 8.0 * math.log(2.0)
_MAX_EXPONENT = 700.0  # math.exp overflows beyond ~709


class ZeroReturnGuard:
    """Online weight ``p`` in (0, 1) of a model's forecast against the zero-return forecast.

    Attributes
    ----------
    excess_loss : float
        ``L_model - L_zero``: summed absolute log-return error of the model minus that of
        persistence (negative = the model has been better), dimensionless.
    range_sq : float
        ``sum m_t^2``, the summed squared ranges of the loss differences.
    weight : float
        Current weight ``p`` of the model (0.5 before anything was learned).
    """

    __slots__ = ("excess_loss", "range_sq", "weight")

    def __init__(self) -> None:
        self.excess_loss = 0.0
        self.range_sq = 0.0
        self.weight = 0.5

    def __getstate__(self) -> dict:
        return {name: getattr(self, name) for name in self.__slots__}

    def __setstate__(self, state: dict) -> None:
        for name, value in state.items():
            setattr(self, name, value)

    def forecast(self, model_return: float) -> float:
        """The served log return: ``weight * model_return``."""
        return self.weight * model_return

    def update(self, model_return: float, realised_return: float) -> None:
        """Score both experts on a realised log return and reweight.

        Parameters
        ----------
        model_return : the model's forecast ``m_t`` (log return) made before ``realised_return``.
        realised_return : ``r_t = ln(close_t / close_{t-1})``.

        Raises
        ------
        ValueError
            If either value is not finite.
        """
        if not (math.isfinite(model_return) and math.isfinite(realised_return)):
            raise ValueError(f"guard needs finite returns, got {model_return!r}, {realised_return!r}")
        self.excess_loss += abs(realised_return - model_return) - abs(realised_return)
        self.range_sq += model_return * model_return
        if self.range_sq > 0.0:
            exponent = math.sqrt(_LN2_8 / self.range_sq) * self.excess_loss
            exponent = max(-_MAX_EXPONENT, min(_MAX_EXPONENT, exponent))
            self.weight = 1.0 / (1.0 + math.exp(exponent))
